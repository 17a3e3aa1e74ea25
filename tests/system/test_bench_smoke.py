"""A quick smoke of the benchmark harness (`make bench`): small sizes, real processes.

Checks that the harness runs end to end and writes well-formed records and a doc; it
asserts nothing about timings (those are `make bench`'s job, on a quiet machine)."""
from __future__ import annotations

import json
import struct

from bench import mqttload, run

FIELDS = {"figure", "measured", "baseline", "ratio", "target", "pass"}


def test_codec_frames_what_the_broker_expects():
    pkt = mqttload.publish_packet("panic/v1/d-1/alert", b"x" * 200, pid=7)
    assert pkt[0] == 0x32  # PUBLISH, QoS 1
    assert pkt[1] & 0x80 and pkt[2] == 1  # remaining length 2 + 18 + 2 + 200 = 222 as a varint
    assert pkt[3:5] == struct.pack("!H", 18) and pkt[5:23] == b"panic/v1/d-1/alert"
    assert pkt[23:25] == struct.pack("!H", 7)
    con = mqttload.connect_packet("d-1", "d-1", "pw", 30, "panic/v1/d-1/status", mqttload.will_body("d-1"))
    assert con[0] == 0x10 and b"MQTT\x04" in con
    flags = con[con.index(b"MQTT\x04") + 5]
    assert flags == 0xC0 | 0x04 | 0x08 | 0x20  # login, will QoS 1 retained, clean_session=0


def test_percentile_and_table():
    assert run.pct([5, 1, 3, 2, 4], 50) == 3
    assert run.pct(list(range(1, 101)), 99) == 99
    rec = run.record("x (ms)", 2.0, 1.0, "< 3", True)
    assert set(rec) == FIELDS and rec["ratio"] == 2.0
    assert "| x (ms) | 2.00 | 1.00 | 2.00x | < 3 | pass |" in run.table([rec])


def test_quick_run_writes_well_formed_records(tmp_path):
    out, doc = tmp_path / "results.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\ntail\n")
    assert run.main(["--quick", "--only", "1,2,3,5", "--presses", "5", "--out", str(out), "--doc", str(doc)]) == 0
    records = json.loads(out.read_text())
    assert records and all(set(r) == FIELDS for r in records)
    figures = {r["figure"].split()[0] for r in records}
    assert figures == {"1", "2", "3", "5"}
    for r in records:
        assert isinstance(r["measured"], (int, float)) and r["measured"] == r["measured"], r  # not NaN
        assert r["pass"] in (True, False, None)
    burst = next(r for r in records if r["figure"].startswith("3 burst"))
    assert burst["baseline"] > 0  # every alert of the burst was PUBACKed by the broker
    text = doc.read_text()
    assert "kept" in text and "tail" in text and "old" not in text and "| figure |" in text
