"""A CA and a server certificate for the broker's TLS listener, made with the `openssl` CLI.

Only made when missing, so registry changes (which rewrite the broker's files) never
replace a certificate devices already trust. ECDSA P-256: the ESP32's mbedTLS verifies
it quickly and the handshake stays small.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity clients commonly accept for a server certificate


class CertError(RuntimeError):
    pass


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError("openssl not found: install it (Debian package `openssl`) or give "
                        "[broker] tls_cafile, tls_certfile and tls_keyfile")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {proc.stderr.strip()[:500]}")


def _san(hosts: list[str]) -> str:
    out = []
    for h in dict.fromkeys(hosts):  # keep order, drop repeats
        try:
            ipaddress.ip_address(h)
            out.append(f"IP:{h}")
        except ValueError:
            out.append(f"DNS:{h}")
    return ",".join(out)


def ensure(dir: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca.crt, server.crt, server.key) in `dir`, making whatever is missing."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = dir / "ca.crt", dir / "ca.key"
    crt, key = dir / "server.crt", dir / "server.key"
    if not (ca_crt.exists() and ca_key.exists()):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-days", str(CA_DAYS), "-subj", "/O=Panic Button on Hand/CN=Panic Button broker CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(ca_key), "-out", str(ca_crt))
        os.chmod(ca_key, 0o600)
        crt.unlink(missing_ok=True)
    if not (crt.exists() and key.exists()):
        with tempfile.TemporaryDirectory() as tmp:
            csr, ext = Path(tmp) / "server.csr", Path(tmp) / "ext.cnf"
            ext.write_text(f"subjectAltName={_san(hosts)}\nbasicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
            _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-subj", f"/O=Panic Button on Hand/CN={hosts[0]}", "-keyout", str(key), "-out", str(csr))
            os.chmod(key, 0o600)
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                     "-CAcreateserial", "-days", str(SERVER_DAYS), "-sha256", "-extfile", str(ext),
                     "-out", str(crt))
    return ca_crt, crt, key
