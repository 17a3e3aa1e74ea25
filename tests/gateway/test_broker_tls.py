"""The broker's files: a TLS listener for devices whose certificate verifies against the
CA `broker-config` made, next to the plain loopback listener the gateway uses."""
from __future__ import annotations

import json
import socket
import ssl

from gateway import signing
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import KAUMAN, close, custom_stack, login


def test_broker_config_out_writes_a_tls_listener_with_a_generated_ca(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    out = tmp_path / "field-broker"
    s.cli("broker-config", "--out", str(out), "--tls-port", "8884")
    conf = (out / "mosquitto.conf").read_text()
    assert f"listener {s.broker_port} 127.0.0.1" in conf  # the gateway's loopback listener stays
    assert "listener 8884 127.0.0.1" in conf  # every interface only when asked for
    s.cli("broker-config", "--out", str(out), "--tls-port", "8884", "--tls-bind", "0.0.0.0")
    conf = (out / "mosquitto.conf").read_text()
    assert "listener 8884 0.0.0.0" in conf and f"cafile {out / 'tls' / 'ca.crt'}" in conf
    assert "tls_version tlsv1.2" in conf
    assert (out / "run" / "dynamic-security.json").stat().st_mode & 0o077 == 0
    assert (out / "tls" / "server.key").stat().st_mode & 0o077 == 0
    ca = (out / "tls" / "ca.crt").read_bytes()
    s.cli("broker-config", "--out", str(out))  # again: keeps the CA devices already trust
    assert (out / "tls" / "ca.crt").read_bytes() == ca


def test_tls_listener_presents_the_generated_certificate_and_carries_alerts(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    tls_port = s.broker_tls_port()
    s.start_broker()
    s.start_gateway()
    try:
        ca = s.state / "broker" / "tls" / "ca.crt"
        ctx = ssl.create_default_context(cafile=str(ca))  # verifies chain and host name
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            cert = tls.getpeercert()
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        issuer = dict(x[0] for x in cert["issuer"])
        assert issuer["commonName"] == "Panic Button broker CA"
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        # A stranger's CA does not verify it.
        other = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
            try:
                other.wrap_socket(raw, server_hostname="127.0.0.1")
                raise AssertionError("the broker's certificate verified without its CA")
            except ssl.SSLCertVerificationError:
                pass

        creds = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
        broker_cfg = creds["config"]["brokers"]
        assert broker_cfg == [{"host": "127.0.0.1", "port": tls_port, "tls": True, "ca": "ca.crt",
                               "server_hostname": "127.0.0.1"}]
        # A device over TLS: login, alert, signed ack.
        reason, c = login(tls_port, creds["mqtt_username"], creds["mqtt_password"], tls={"ca_certs": str(ca)})
        try:
            assert not reason.is_failure
            acks = []
            c.on_message = lambda cl, u, m: acks.append(m.payload)
            c.subscribe(f"panic/v1/{creds['id']}/ack", qos=1)
            helper = RawDevice.__new__(RawDevice)  # only for its body(); no connection
            helper.dev, helper.secret = creds["id"], creds["secret"]
            c.publish(f"panic/v1/{creds['id']}/alert", signing.sign(helper.body(seq=1), creds["secret"]),
                      qos=1).wait_for_publish(5)
            from tests.conftest import wait_until
            wait_until(lambda: acks)
            body, tag = signing.split(acks[0])
            assert signing.verify(body, tag, creds["secret"]) and json.loads(body)["stage"] == "received"
        finally:
            close(c)
    finally:
        s.down()
