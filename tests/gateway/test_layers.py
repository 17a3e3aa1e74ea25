"""The layering rules of docs/architecture.md, checked on the source so they cannot erode.

- gateway/domain/ holds rules only: it imports nothing that does I/O and nothing from the
  gateway outside itself.
- gateway/store/ owns every SQL statement: no module outside it reaches into the store's
  plumbing (`_tx`, `_exec`, `_rows`, `_read`), and the store never imports the edges, the
  sinks or the transport.
- Data flows one way: the firmware never imports host code, and the protocol module
  imports nothing from the gateway or the simulator.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {"sqlite3", "psycopg", "paho", "httpx", "starlette", "uvicorn", "socket", "subprocess",
              "threading", "requests", "os", "pathlib", "logging", "urllib"}


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute-ish module name, relative level) for every import in a file."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


def resolve(path: Path, module: str, level: int) -> str:
    """The dotted name an import refers to, relative imports resolved against `path`."""
    if level == 0:
        return module
    pkg = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    base = pkg[: len(pkg) - (level - 1)]
    return ".".join([*base, module] if module else base)


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", files("gateway/domain"), ids=lambda p: p.name)
def test_domain_does_no_io_and_stands_alone(path):
    for module, level in imports(path):
        name = resolve(path, module, level)
        top = name.split(".")[0]
        assert top not in IO_MODULES, f"{path.name} imports {name}: the domain does no I/O"
        if top == "gateway":
            assert name.startswith("gateway.domain"), f"{path.name} imports {name}: the domain stands alone"


@pytest.mark.parametrize("path", files("gateway/store"), ids=lambda p: p.name)
def test_store_imports_no_edges_sinks_or_transport(path):
    for module, level in imports(path):
        name = resolve(path, module, level)
        for banned in ("gateway.sinks", "gateway.forward", "gateway.web", "gateway.api", "gateway.console",
                       "gateway.cli", "gateway.ingest", "gateway.service", "paho"):
            assert not name.startswith(banned), f"store/{path.name} imports {name}"


PLUMBING = re.compile(r"\.(_tx|_exec|_rows|_read)\(")


def test_only_the_store_touches_its_plumbing():
    offenders = []
    for folder in ("gateway", "simulator", "bench", "tools", "tests"):
        for path in files(folder):
            if path.is_relative_to(ROOT / "gateway/store") or path == Path(__file__).resolve():
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                # simulator/firmware.py has a `_read` of its own (the firmware process's pipe).
                if PLUMBING.search(line) and "store" in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "SQL plumbing used outside gateway/store:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", files("protocol"), ids=lambda p: p.name)
def test_protocol_depends_on_nothing_of_ours(path):
    for module, level in imports(path):
        top = resolve(path, module, level).split(".")[0]
        assert top not in ("gateway", "simulator", "bench", "tests"), f"protocol/{path.name} imports {top}"


@pytest.mark.parametrize("path", files("firmware"), ids=lambda p: p.name)
def test_firmware_imports_no_host_code(path):
    for module, level in imports(path):
        top = resolve(path, module, level).split(".")[0]
        assert top not in ("gateway", "simulator", "protocol", "bench", "tests"), f"firmware/{path.name} imports {top}"


def test_architecture_doc_shows_the_lifecycle_table_the_code_has():
    from tools import render_docs
    text = render_docs.DOC.read_text()
    assert "<!-- lifecycle:begin -->" in text
    assert render_docs.render(text) == text, "docs/architecture.md is stale: run python -m tools.render_docs"
