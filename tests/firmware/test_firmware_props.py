"""Property tests of the firmware's ack, journal and NMEA parsers: hypothesis generates
in CPython, the firmware's own code answers under the real `micropython`."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
KEY = b"k" * 64


class Oracle:
    def __init__(self, tmp: Path) -> None:
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=96K",
             str(ROOT / "tests" / "firmware" / "mp_oracle.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={"FIRMWARE_DIR": str(ROOT / "firmware"), "MP_TMP": str(tmp), "PATH": "/usr/bin:/bin"})

    def ask(self, kind: str, data: bytes | str) -> str:
        arg = data if isinstance(data, str) else data.hex()
        self.proc.stdin.write(f"{kind} {arg}\n")
        answer = self.proc.stdout.readline().rstrip("\n")
        assert answer, f"the firmware process died on {kind} {arg[:200]}"
        assert not answer.startswith("EXC"), f"unhandled exception in firmware on {kind} {arg[:200]}: {answer}"
        return answer


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    o = Oracle(tmp_path_factory.mktemp("mp"))
    yield o
    o.proc.stdin.close()
    o.proc.wait(5)


def sign(body: bytes) -> bytes:
    return body + b"\n" + hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()


acks = st.fixed_dictionaries({
    "v": st.just(1), "id": st.text(st.characters(min_codepoint=45, max_codepoint=122), min_size=1, max_size=80),
    "stage": st.sampled_from(["received", "acknowledged", "dispatched", "on_scene", "resolved", "cancelled",
                              "rejected"]),
    "inc": st.one_of(st.none(), st.text(max_size=20)), "reason": st.one_of(st.none(), st.text(max_size=30)),
    "now": st.integers(0, 2**45)})


@given(acks)
@settings(max_examples=150, deadline=None)
def test_every_genuine_ack_verifies(oracle, ack):
    out = oracle.ask("ack", sign(json.dumps(ack).encode()))
    assert out == f"ok {ack['id'].encode().hex()} {ack['stage']} {ack['now']}"


@given(acks, st.data())
@settings(max_examples=150, deadline=None)
def test_any_tampered_ack_is_refused(oracle, ack, data):
    signed = sign(json.dumps(ack).encode())
    i = data.draw(st.integers(0, len(signed) - 1))
    tampered = signed[:i] + bytes([signed[i] ^ data.draw(st.integers(1, 255))]) + signed[i + 1:]
    assert oracle.ask("ack", tampered).startswith("rej ")


@given(st.binary(max_size=1300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_ack_bytes_never_crash(oracle, payload):
    assert oracle.ask("ack", payload).startswith("rej ")


@given(st.binary(max_size=300))
@settings(max_examples=150, deadline=None)
def test_signed_garbage_is_refused_not_crashed(oracle, body):
    out = oracle.ask("ack", sign(body))
    assert out.startswith(("rej ", "ok "))


def nmea(body: str) -> str:
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    return f"${body}*{cs:02X}"


@given(st.integers(-89_999_999, 89_999_999), st.integers(-179_999_999, 179_999_999), st.integers(1, 20))
@settings(max_examples=150, deadline=None)
def test_valid_gga_gives_the_fix(oracle, lat6, lon6, hdop):
    def dm(v6: int, deg_w: int) -> str:
        v = abs(v6) / 1e6
        d = int(v)
        return f"{d:0{deg_w}d}{(v - d) * 60:07.4f}"
    body = (f"GPGGA,101010.00,{dm(lat6, 2)},{'S' if lat6 < 0 else 'N'},{dm(lon6, 3)},"
            f"{'W' if lon6 < 0 else 'E'},1,08,{hdop}.0,450.0,M,0.0,M,,")
    out = oracle.ask("nmea", nmea(body).encode()).split()
    assert out[0] == "fix", out
    # ddmm.mmmm carries 0.0001 minute (about 1.7 micro-degrees)
    assert abs(int(out[1]) - lat6) <= 2 and abs(int(out[2]) - lon6) <= 2


@given(st.text(max_size=120))
@settings(max_examples=200, deadline=None)
def test_garbage_nmea_never_crashes_and_bad_checksums_give_no_fix(oracle, text):
    text = text.replace("\n", " ").replace("\r", " ")
    out = oracle.ask("nmea", text.encode())
    m = re.fullmatch(r"\$([^*]*)\*([0-9A-Fa-f]{2})", text.strip())
    checksum_ok = m is not None and nmea(m.group(1))[-2:] == m.group(2).upper()
    assert out == "none" or checksum_ok


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_journal_lines_never_crash(oracle, line):
    oracle.ask("line", line)


@given(st.sampled_from(["A", "D"]), st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b))
@settings(max_examples=100, deadline=None)
def test_journal_line_roundtrip(oracle, tag, data):
    line = bytes.fromhex(oracle.ask("mkline", f"{tag} {data.hex()}"))
    assert oracle.ask("line", line) == f"rec {tag} {data.hex()}"


@given(st.integers(1, 6), st.integers(0, 10_000), st.binary(max_size=40))
@settings(max_examples=100, deadline=None)
def test_a_torn_journal_loads_a_prefix_of_its_records(oracle, n, cut_seed, tail):
    recs = [{"id": f"klj-x-rw01-rt01:1:{i}", "boot": 1, "seq": i, "kind": "panic", "t": None, "ref": None}
            for i in range(n)]
    lines = [bytes.fromhex(oracle.ask("mkline", "A " + json.dumps(r).encode().hex())) for r in recs]
    journal = b"".join(lines)
    cut = cut_seed % (len(journal) + 1)
    out = oracle.ask("journal", journal[:cut] + tail).split(" ", 3)
    assert out[0] == "load"
    ids = out[3].split(",") if len(out) > 3 and out[3] else []
    whole = sum(1 for i in range(n) if len(b"".join(lines[: i + 1])) <= cut)
    assert ids[:whole] == [r["id"] for r in recs[:whole]]
    assert len(ids) <= n
