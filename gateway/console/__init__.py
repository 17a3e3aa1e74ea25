"""The dispatch console: a browser UI served by the gateway under /console.

Modules: app (routes, error pages, shared state), pages/ (one module per screen), render
(templates and formatters), security (sessions, CSRF, login limit, headers), accounts
(users and sessions over the store), hub (live-change pokes), queries/health/sla/geo
(reads), i18n (words), settings ([console] in gateway.toml), cli (`panic-gateway user ...`).
Who is asking is gateway/auth.py's job, shared with the API. Nothing is imported here, so
the CLI does not pay for the web stack.
"""
