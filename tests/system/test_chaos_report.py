"""`make chaos` rewrites docs/reliability.md's run figures and keeps what is written by hand
below its marker (the backup broker's coverage)."""
from __future__ import annotations

from pathlib import Path

from tools.chaos import KEPT, write_report

ROOT = Path(__file__).resolve().parents[2]


def test_the_hand_written_part_survives_a_new_run(tmp_path):
    report = tmp_path / "reliability.md"
    report.write_text("# an old run\n| lost | 3 |\n\n" + KEPT + "\n## By hand\nkept\n")
    write_report({"plan": {"devices": 7, "alerts": 70, "duration_s": 9.0}, "lost": 0}, report)
    text = report.read_text()
    assert "| lost | 0 |" in text and "| lost | 3 |" not in text and "runs 7 buttons" in text
    assert text.endswith(KEPT + "\n## By hand\nkept\n")


def test_the_repository_report_has_the_marker():
    assert KEPT in (ROOT / "docs" / "reliability.md").read_text()
