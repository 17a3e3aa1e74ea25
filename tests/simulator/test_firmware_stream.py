"""A firmware process's event stream: the lines and the "exit" of a process that has just died
stay in its own boot's stream. The brown-out test power-cycles a button right after its process
died; the old reader's late "exit" landing in the new boot's stream failed it as "firmware
exited" (two CI runs)."""
from __future__ import annotations

import io
import queue

from simulator.firmware import FirmwareDevice


class DeadProcess:
    stdout = io.BytesIO(b'{"ev": "esp32", "what": "fwrite"}\n')

    def wait(self) -> int:
        return 73  # a brown-out


def test_a_dead_boots_last_lines_and_exit_stay_in_its_own_stream(tmp_path):
    fw = FirmwareDevice(tmp_path / "flash", {"dev": "klj-kauman-rw05-rt03"})
    old: queue.Queue = queue.Queue()
    fw.events = queue.Queue()  # the next boot has started: its stream is a new one
    fw.proc = object()  # type: ignore[assignment]  # and so is its process
    fw._read(DeadProcess(), old)  # type: ignore[arg-type]  # the old boot's reader, late
    assert fw.events.empty()
    assert [old.get_nowait()["ev"] for _ in range(2)] == ["esp32", "exit"]
