"""The fleet's store (gateway/store/fleet.py) on both databases: releases, rollouts, command
numbers and the audit log, and each device's firmware record from its results."""
from __future__ import annotations

import threading

from gateway.models import Device
from gateway.store.postgres import PostgresStore
from tests.gateway.test_store import DEV

OTHER = "klj-kauman-rw05-rt04"
MANIFEST = b'{"v":1,"fw":"1.3.0","seq":13,"size":9,"sha256":"ab","key":"k1"}'


def add_release(store, seq: int = 13) -> None:
    assert store.add_release(seq=seq, fw="1.3.0", manifest=MANIFEST, signature=b"\x00sig\xff", bundle=b"PBF1\x00bytes",
                             sha256="ab", by="rm", at_ms=1000)


def test_release_kept_once_with_its_bytes(store):
    add_release(store)
    assert not store.add_release(seq=13, fw="9", manifest=b"{}", signature=b"", bundle=b"", sha256="", by="x", at_ms=2)
    rel = store.get_release(13)
    assert rel.fw == "1.3.0" and rel.manifest == MANIFEST.decode() and rel.signature == b"\x00sig\xff"
    assert rel.size == 10 and store.release_bundle(13) == b"PBF1\x00bytes"
    assert [r.seq for r in store.releases()] == [13] and store.get_release(14) is None


def test_rollout_starts_widens_halts_and_is_superseded(store):
    add_release(store, 13)
    r = store.start_rollout(13, 5.0, by="admin", at_ms=10)
    assert (r.seq, r.pct, r.state, r.why) == (13, 5.0, "active", "")
    assert store.set_rollout_state(13, "halted", "3 of 3 failed", at_ms=11)
    assert not store.set_rollout_state(13, "halted", "again", at_ms=12)  # one reason, the first
    assert store.current_rollout().why == "3 of 3 failed"
    r = store.start_rollout(13, 100.0, by="admin", at_ms=20)  # widened after a look: goes on
    assert (r.pct, r.state, r.why, r.started_ms) == (100.0, "active", "", 10)
    add_release(store, 14)
    store.start_rollout(14, 5.0, by="admin", at_ms=30)
    assert store.current_rollout().seq == 14
    old = store.rollout(13)
    assert old.state == "done" and "superseded by release 14" in old.why and store.rollout(14).state == "active"


def test_command_numbers_grow_per_device_and_results_complete_the_log(store):
    assert [store.add_command(DEV, "locate", {}, by="op:siti", at_ms=i) for i in (1, 2)] == [1, 2]
    assert store.add_command(OTHER, "reboot", {}, by="op:budi", at_ms=3) == 1
    res = {"v": 1, "dev": DEV, "n": 2, "op": "locate", "ok": True, "err": None, "fw": "1.2.0", "slot": "factory"}
    assert store.record_result(DEV, res, 5)
    assert not store.record_result(DEV, {**res, "n": 9}, 6)  # never sent: not in the log
    log = store.commands(DEV)
    assert [c["n"] for c in log] == [2, 1]
    assert log[0]["ok"] is True and log[0]["by"] == "op:siti" and log[0]["result"]["fw"] == "1.2.0"
    assert log[0]["result_ms"] == 5 and log[1]["ok"] is None
    fw = store.firmware()[DEV]
    assert fw["fw"] == "1.2.0" and fw["slot"] == "factory" and fw["last_op"] == "locate" and fw["known"]


def test_ota_results_move_the_firmware_record(store):
    add_release(store)
    m = '{"v":1,"fw":"1.3.0","seq":13}'  # the manifest text as signed
    n = store.add_command(DEV, "ota", {"m": m, "sig": "x"}, by="rollout", at_ms=1)
    fw = store.firmware()[DEV]
    assert (fw["rel"], fw["stage"], fw["ota_n"], fw["seq"]) == (13, "sent", n, None)
    base = {"v": 1, "dev": DEV, "n": n, "op": "ota", "ok": True, "err": None, "rel": 13, "slot": "a"}
    store.record_result(DEV, {**base, "stage": "accepted", "fw": "1.2.0"}, 2)
    store.record_result(DEV, {**base, "stage": "trial", "fw": "1.3.0"}, 3)
    fw = store.firmware()[DEV]
    assert (fw["stage"], fw["seq"], fw["fw"], fw["slot"]) == ("trial", 13, "1.3.0", "a")
    store.record_result(DEV, {**base, "stage": "rolled_back", "ok": False, "err": "crash", "fw": "1.2.0",
                              "slot": "factory"}, 4)
    fw = store.firmware()[DEV]
    assert (fw["stage"], fw["err"], fw["seq"], fw["slot"], fw["updated_ms"]) == ("rolled_back", "crash", None,
                                                                                 "factory", 4)
    assert store.command(DEV, n)["result"]["stage"] == "rolled_back"


def test_firmware_lists_every_registered_device(store):
    store.add_device(Device(id=OTHER, secret="t" * 64, mqtt_password="p", created_ms=1))
    recs = store.firmware()
    assert set(recs) == {DEV, OTHER} and not recs[OTHER]["known"] and recs[OTHER]["health"] == "unknown"
    assert recs[OTHER]["status"] == "active"


def test_racing_gateways_never_share_a_command_number(store):
    if not isinstance(store, PostgresStore):
        return  # SQLite serialises every writer
    got: list[int] = []
    lock = threading.Lock()

    def send():
        for _ in range(20):
            n = store.add_command(DEV, "locate", {}, by="x", at_ms=1)
            with lock:
                got.append(n)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 81))


def test_one_gateway_claims_each_device_for_a_release(store):
    assert store.claim_ota(DEV, 13, None, at_ms=5)
    assert not store.claim_ota(DEV, 13, None, at_ms=6)  # a second gateway judged the same empty record
    assert not store.claim_ota(DEV, 13, 4, at_ms=7)  # judged an older record
    assert store.claim_ota(DEV, 13, 5, at_ms=8)  # a retry after what it saw
    fw = store.firmware()[DEV]
    assert (fw["rel"], fw["stage"], fw["updated_ms"]) == (13, "sent", 8)


def test_a_replay_refusal_does_not_overwrite_the_run(store):
    n = store.add_command(DEV, "reboot", {}, by="op:siti", at_ms=1)
    res = {"v": 1, "dev": DEV, "n": n, "op": "reboot", "ok": True, "err": None, "fw": "1.2.0", "slot": "factory"}
    assert store.record_result(DEV, res, 2)
    assert store.record_result(DEV, {**res, "ok": False, "err": "replay"}, 3)  # the broker delivered it twice
    c = store.command(DEV, n)
    assert (c["ok"], c["err"], c["result_ms"]) == (True, None, 2)
    m = store.add_command(DEV, "locate", {}, by="op:siti", at_ms=4)
    assert store.record_result(DEV, {**res, "n": m, "op": "locate", "ok": False, "err": "replay"}, 5)
    assert store.command(DEV, m)["err"] == "replay"  # never run here: the refusal is its result
