"""protocol/release.py: protocol/vectors.json "release" under CPython (the same bytes
firmware/rsa.py and ota.py check under micropython), and the release manager's CLI."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import release as R

ROOT = Path(__file__).resolve().parents[2]
V = json.loads((ROOT / "protocol" / "vectors.json").read_text())["release"]
TEST_KEY = ROOT / "tests" / "firmware" / "release_test_key.pem"


def test_the_vector_release_is_reproduced_and_verifies():
    rel = R.parse(bytes.fromhex(V["pbr_hex"]))
    assert rel.manifest_bytes.decode() == V["manifest"]
    assert R.ota_args(rel) == {"m": V["manifest"], "sig": V["sig"]}
    assert R.verify(rel, V["keys"])["seq"] == 7
    files = R.parse_bundle(rel.bundle)
    assert files["hello.py"] == V["bundle_files"]["hello.py"].encode()
    # PKCS#1 v1.5 is deterministic: the test key signs the same bytes again.
    again = R.build(rel.bundle, fw="1.1.0", seq=7, private_key=R.load_private(TEST_KEY))
    assert again.pack() == rel.pack()
    assert R.key_id(R.load_private(TEST_KEY).public_key().public_numbers().n) in V["keys"]


@pytest.mark.parametrize("case", V["reject"], ids=lambda c: c["name"])
def test_altered_signatures_and_manifests_are_refused(case):
    assert not R.check_signature(case["manifest"].encode(), base64.b64decode(case["sig"]),
                                 next(iter(V["keys"].values())))


def test_unknown_key_tampered_bundle_and_bad_framing_are_refused():
    rel = R.parse(bytes.fromhex(V["pbr_hex"]))
    with pytest.raises(R.ReleaseError) as e:
        R.verify(rel, {})
    assert e.value.reason == "key"
    bad = R.Release(rel.manifest_bytes, rel.sig, rel.bundle[:-1] + bytes([rel.bundle[-1] ^ 1]))
    with pytest.raises(R.ReleaseError) as e:
        R.verify(bad, V["keys"])
    assert e.value.reason == "hash"
    for data in (b"", b"PBR0" + rel.pack()[4:], rel.pack()[:20]):
        with pytest.raises(R.ReleaseError) as e:
            R.parse(data)
        assert e.value.reason == "format"
    with pytest.raises(ValueError):
        R.bundle({"main.py": b"x"})            # the loader never ships
    with pytest.raises(ValueError):
        R.bundle({"../x.py": b"x"})


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "protocol.release", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_keygen_build_show_and_rotation(tmp_path):
    assert _cli("keygen", "rm1", "--dir", tmp_path, cwd=tmp_path).returncode == 0
    assert (tmp_path / "rm1.pem").stat().st_mode & 0o077 == 0
    assert _cli("keygen", "rm2", "--dir", tmp_path, cwd=tmp_path).returncode == 0
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "main.py").write_text("loader")
    (fw / "app.py").write_text("x = 1\n")
    (fw / "setup.html").write_text("<p>halaman</p>")     # read from the module's own folder
    (fw / "manifest.py").write_text("module('app.py')")  # the frozen image's list: not shipped
    out = tmp_path / "r.pbr"
    r = _cli("build", fw, "--key", tmp_path / "rm1.pem", "--seq", 5, "--fw", "1.2.0",
             "--rotate", tmp_path / "rm2.pub.json", "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rel = R.parse(out.read_bytes())
    files = R.parse_bundle(rel.bundle)
    assert set(files) == {"app.py", "setup.html", R.KEYS_FILE}
    assert rel.manifest["keys"] == list(json.loads((tmp_path / "rm2.pub.json").read_text()))
    ok = _cli("show", out, "--keys", tmp_path / "rm1.pub.json", cwd=tmp_path)
    assert ok.returncode == 0 and "signature and hash: ok" in ok.stdout
    wrong = _cli("show", out, "--keys", tmp_path / "rm2.pub.json", cwd=tmp_path)
    assert wrong.returncode == 2 and "key" in wrong.stderr
