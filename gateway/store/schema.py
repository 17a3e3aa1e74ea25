"""Versioned schema. Each migration is a list of statements; {serial} and {blob} are
filled per database so one text serves SQLite and PostgreSQL."""

MIGRATIONS: list[list[str]] = [
    [  # 1: devices, alerts, incidents, events, forwards
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
    [  # 2: registry review flag and secret rotation, escalation, false alarms, device health,
        #    forward leases (several gateways on one queue), registry version (cache invalidation)
        "ALTER TABLE devices ADD COLUMN flag TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE devices ADD COLUMN secret_rotated_ms BIGINT",
        "ALTER TABLE incidents ADD COLUMN escalated_ms BIGINT",
        "ALTER TABLE incidents ADD COLUMN false_alarm INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX incidents_open ON incidents (state, escalated)",
        "CREATE INDEX incidents_dev ON incidents (dev, false_alarm, cancelled_ms)",
        "ALTER TABLE forwards ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE forwards ADD COLUMN lease_owner TEXT",
        # Per-subject order: an event is claimed only when no earlier one of its subject is pending.
        "CREATE INDEX forwards_subject ON forwards (sink, incident_id, id)",
        """CREATE TABLE device_health (
            dev TEXT PRIMARY KEY, state TEXT NOT NULL, health TEXT NOT NULL,
            low_battery INTEGER NOT NULL DEFAULT 0, backlog INTEGER NOT NULL DEFAULT 0,
            fw TEXT, boot BIGINT, up BIGINT, batt INTEGER, rssi INTEGER, outbox INTEGER,
            heartbeat_s INTEGER, last_status_ms BIGINT, silent_at_ms BIGINT,
            changed_ms BIGINT NOT NULL)""",
        "CREATE INDEX device_health_silent ON device_health (health, silent_at_ms)",
        """CREATE TABLE device_events (
            id {serial}, dev TEXT NOT NULL, event TEXT NOT NULL, at_ms BIGINT NOT NULL,
            body TEXT NOT NULL)""",
        "CREATE INDEX device_events_dev ON device_events (dev, id)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('registry_version', 0)",
    ],
    [  # 3: the dispatch console: operator accounts and login sessions.
       # IF NOT EXISTS: databases made while this slot was empty already record version 3,
       # so gateway/console/accounts.py re-runs these statements idempotently at start.
        """CREATE TABLE IF NOT EXISTS console_users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL,
            unit TEXT NOT NULL DEFAULT '', disabled INTEGER NOT NULL DEFAULT 0,
            created_ms BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS console_sessions (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
            created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS console_sessions_name ON console_sessions (name)",
    ],
    [  # 4: alert messages ingest gave up on (poison messages), kept with their reason
        """CREATE TABLE dead_letters (
            id {serial}, topic TEXT NOT NULL, dev TEXT NOT NULL, alert_id TEXT NOT NULL,
            reason TEXT NOT NULL, attempts INTEGER NOT NULL, payload TEXT NOT NULL,
            at_ms BIGINT NOT NULL)""",
    ],
    [  # 5: a responder token is bound to a unit: it acts on and reads that unit's incidents only
        "ALTER TABLE tokens ADD COLUMN unit TEXT NOT NULL DEFAULT ''",
    ],
    [  # 6: tokens expire, can be revoked and record their last use; delivered forwards are
       #    pruned by age (the index finds them without scanning the queue)
        "ALTER TABLE tokens ADD COLUMN expires_ms BIGINT",
        "ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT",
        "ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT",
        "CREATE INDEX forwards_delivered ON forwards (delivered_ms)",
    ],
    [  # 7: dispatch: the units registry with each unit's last fix, the positions units report
       #    (kept with the incident they served), console accounts per sector, and each
       #    kelurahan's Bhabinkamtibmas (community officer)
        """CREATE TABLE units (
            call_sign TEXT PRIMARY KEY, kind TEXT NOT NULL, post TEXT NOT NULL DEFAULT '',
            sector TEXT NOT NULL, status TEXT NOT NULL, post_lat6 BIGINT NOT NULL, post_lon6 BIGINT NOT NULL,
            lat6 BIGINT, lon6 BIGINT, acc INTEGER, fix_ms BIGINT, incident_id TEXT,
            status_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL)""",
        """CREATE TABLE unit_positions (
            id {serial}, call_sign TEXT NOT NULL, lat6 BIGINT NOT NULL, lon6 BIGINT NOT NULL,
            acc INTEGER NOT NULL, at_ms BIGINT NOT NULL, incident_id TEXT)""",
        "CREATE INDEX unit_positions_incident ON unit_positions (incident_id, at_ms)",
        "CREATE INDEX unit_positions_unit ON unit_positions (call_sign, at_ms)",
        "ALTER TABLE console_users ADD COLUMN sector TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE bhabinkamtibmas (
            kelurahan TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL, updated_ms BIGINT NOT NULL)""",
    ],
    [  # 8: the holder's cancel is a request the desk confirms after its timed call-back
        "ALTER TABLE incidents ADD COLUMN cancel_requested_ms BIGINT",
        "ALTER TABLE incidents ADD COLUMN verified_ms BIGINT",
        "ALTER TABLE incidents ADD COLUMN verify_outcome TEXT",
    ],
    [  # 9: each button's link diagnostics: last reset cause, reconnects this boot, the kind of
       #    its last link failure and when it was first reported
        "ALTER TABLE device_health ADD COLUMN reset_cause TEXT",
        "ALTER TABLE device_health ADD COLUMN reconnects BIGINT",
        "ALTER TABLE device_health ADD COLUMN link_err TEXT",
        "ALTER TABLE device_health ADD COLUMN link_err_ms BIGINT",
    ],
    [  # 10: the second path (docs/protocol.md "Paths"): each button's SIM (an SMS is believed
       #     only from it), every (alert, path) delivery with its latency, the incident's first
       #     path, and the last cellular proof a status carried
        "ALTER TABLE devices ADD COLUMN sim TEXT",
        "CREATE UNIQUE INDEX devices_sim ON devices (sim)",
        """CREATE TABLE deliveries (
            alert_id TEXT NOT NULL, path TEXT NOT NULL, incident_id TEXT, dev TEXT NOT NULL,
            received_ms BIGINT NOT NULL, latency_ms BIGINT NOT NULL, PRIMARY KEY (alert_id, path))""",
        "CREATE INDEX deliveries_incident ON deliveries (incident_id)",
        "CREATE INDEX deliveries_dev ON deliveries (dev, path, received_ms)",
        "ALTER TABLE incidents ADD COLUMN path TEXT NOT NULL DEFAULT 'wifi'",
        "ALTER TABLE device_health ADD COLUMN cell_reg TEXT",
        "ALTER TABLE device_health ADD COLUMN cell_csq INTEGER",
        "ALTER TABLE device_health ADD COLUMN cell_test_ms BIGINT",
        "ALTER TABLE device_health ADD COLUMN cell_ms BIGINT",
    ],
    [  # 11: a GPS button's positions while its incident is open (the track on the incident's map)
        """CREATE TABLE incident_track (
            incident_id TEXT NOT NULL, at_ms BIGINT NOT NULL, lat6 BIGINT NOT NULL, lon6 BIGINT NOT NULL,
            acc INTEGER NOT NULL, PRIMARY KEY (incident_id, at_ms))""",
    ],
    [  # 12: the fleet (docs/protocol.md "Fleet"): signed releases with their bundles (base64),
       #     one rollout per release, each button's firmware as it reported it, and every command
       #     sent to a button with its result (the audit log: who, what, when, what came back)
        """CREATE TABLE fleet_releases (
            seq BIGINT PRIMARY KEY, fw TEXT NOT NULL, manifest TEXT NOT NULL, signature TEXT NOT NULL,
            bundle TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL, added_by TEXT NOT NULL,
            added_ms BIGINT NOT NULL)""",
        """CREATE TABLE fleet_rollouts (
            seq BIGINT PRIMARY KEY, pct DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, why TEXT NOT NULL DEFAULT '',
            by_name TEXT NOT NULL, started_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL)""",
        """CREATE TABLE device_firmware (
            dev TEXT PRIMARY KEY, fw TEXT, seq BIGINT, slot TEXT, rel BIGINT, stage TEXT, err TEXT,
            ota_n BIGINT, last_op TEXT, last_ok INTEGER, last_err TEXT, updated_ms BIGINT NOT NULL)""",
        "CREATE TABLE fleet_cmdseq (dev TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        """CREATE TABLE fleet_commands (
            dev TEXT NOT NULL, n BIGINT NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL, by_name TEXT NOT NULL,
            sent_ms BIGINT NOT NULL, result TEXT, ok INTEGER, err TEXT, result_ms BIGINT,
            PRIMARY KEY (dev, n))""",
    ],
    [  # 13: a claim walks a sink's pending entries in id order and stops at its limit; through
       #     forwards_due it read every pending entry and sorted them, per claim (a city-wide
       #     burst's backlog made claims quadratic: docs/benchmarks.md)
        "CREATE INDEX forwards_pending ON forwards (sink, id) WHERE delivered_ms IS NULL AND dead = 0",
    ],
]
