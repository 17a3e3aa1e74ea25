"""Regenerate the parts of the docs that are rendered from code: `python -m tools.render_docs`.

Only the block between the `<!-- lifecycle:begin -->` and `<!-- lifecycle:end -->` markers
of docs/architecture.md is written; tests/gateway/test_layers.py fails when it is stale.
"""
from __future__ import annotations

import re
from pathlib import Path

from gateway.domain import lifecycle

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BLOCK = re.compile(r"(<!-- lifecycle:begin -->\n).*?(<!-- lifecycle:end -->)", re.S)


def lifecycle_table() -> str:
    rows = lifecycle.table()
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + lifecycle_table() + m.group(2), text)


def main() -> None:
    DOC.write_text(render(DOC.read_text()))


if __name__ == "__main__":
    main()
