"""SMS, the last-resort path (docs/protocol.md "SMS", docs/gateway.md "SMS").

The command centre's GSM modem is run by Debian's gammu-smsd (files service). Its
RunOnReceive hook, `panic-gateway sms receive` (hook.py), hands each message to the running
gateway over `POST /api/sms/inbound` with a relay-only token (api_sms.py); the gateway checks
it (relay.py: rate, number, MAC, replay, then the checks every alert gets) and stores it
through the same ingest as the brokers' alerts, with path `sms`. The hook sends the signed
ack it is given with `gammu-smsd-inject`, so the daemon's outbox carries it back.
"""
