"""The dispatch console: a browser UI served by the gateway under /console (issue 5).

Modules: app (routes), security (sessions, CSRF, login limit), accounts (users and sessions
in the database), hub (live-change pokes), queries/health/sla/geo (reads), i18n (words),
settings ([console] in gateway.toml), cli (`panic-gateway user ...`). Nothing is imported
here, so the CLI does not pay for the web stack.
"""
