"""The gateway's rules, written once and free of I/O.

`lifecycle` (which action fits which incident state and role), `sla` (how the 10-minute
promise is measured), `policy` (the false-alarm policy) and `health` (device health).
The store, the API, the console, the reports and the simulator read these; none of
them re-encodes a rule.
"""
