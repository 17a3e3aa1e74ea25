"""Files a running broker re-reads (logins, ACLs, node configs) are replaced whole: a broker
reloading while one is rewritten reads the old file or the new one, never half of one (a
truncated login file reloads as "no such user" and drops every device it no longer lists)."""
from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
