"""Versioned schema. Each migration is a list of statements; {serial} and {blob} are
filled per database so one text serves SQLite and PostgreSQL."""

MIGRATIONS: list[list[str]] = [
    [  # 1: the walking skeleton
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY, secret TEXT NOT NULL, mqtt_password TEXT NOT NULL,
            kelurahan TEXT NOT NULL DEFAULT '', kecamatan TEXT NOT NULL DEFAULT '',
            rw INTEGER NOT NULL DEFAULT 0, rt INTEGER NOT NULL DEFAULT 0,
            lat6 BIGINT NOT NULL DEFAULT 0, lon6 BIGINT NOT NULL DEFAULT 0,
            holder TEXT NOT NULL DEFAULT '', phone TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'active',
            created_ms BIGINT NOT NULL)""",
        """CREATE TABLE alerts (
            id TEXT PRIMARY KEY, dev TEXT NOT NULL, kind TEXT NOT NULL,
            incident_id TEXT, received_ms BIGINT NOT NULL, body TEXT NOT NULL)""",
        """CREATE TABLE incidents (
            id TEXT PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE, dev TEXT NOT NULL,
            kind TEXT NOT NULL, state TEXT NOT NULL, press_ms BIGINT NOT NULL,
            received_ms BIGINT NOT NULL, lat6 BIGINT NOT NULL, lon6 BIGINT NOT NULL,
            acc INTEGER NOT NULL, src TEXT NOT NULL, batt INTEGER, rssi INTEGER,
            clock TEXT NOT NULL, acknowledged_ms BIGINT, dispatched_ms BIGINT,
            on_scene_ms BIGINT, resolved_ms BIGINT, cancelled_ms BIGINT, unit TEXT,
            escalated INTEGER NOT NULL DEFAULT 0, updated_ms BIGINT NOT NULL)""",
        "CREATE INDEX incidents_received ON incidents (received_ms)",
        """CREATE TABLE events (
            id {serial}, incident_id TEXT NOT NULL, stage TEXT NOT NULL,
            at_ms BIGINT NOT NULL, actor TEXT NOT NULL, note TEXT)""",
        "CREATE INDEX events_incident ON events (incident_id)",
        """CREATE TABLE forwards (
            id {serial}, sink TEXT NOT NULL, incident_id TEXT NOT NULL,
            idem_key TEXT NOT NULL, payload TEXT NOT NULL, created_ms BIGINT NOT NULL,
            next_ms BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            delivered_ms BIGINT, dead INTEGER NOT NULL DEFAULT 0, last_error TEXT,
            UNIQUE (sink, idem_key))""",
        "CREATE INDEX forwards_due ON forwards (sink, delivered_ms, dead, next_ms)",
        """CREATE TABLE tokens (
            hash TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL,
            created_ms BIGINT NOT NULL)""",
    ],
    [  # 2: reserved for the gateway's registry, health, escalation and false-alarm policy (issue 4)
    ],
    [  # 3: reserved for the dispatch console: operator accounts and sessions (issue 5)
    ],
]
