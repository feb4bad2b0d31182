"""A step's bar shared through its progress file and drawn by a driver that does not run it
(the Ray executor's view of its steps)."""
from __future__ import annotations

import fcntl
import io
import os
import select
import struct
import termios
import time
from pathlib import Path

from valueharms import console


def _wait_for(path: Path, n: int) -> console.Progress:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = console.read_progress(path)
        if state is not None and state.n == n:
            return state
        time.sleep(0.02)
    raise AssertionError(f"{path} never showed {n} items: {console.read_progress(path)}")


def test_a_step_shares_its_bar_and_a_driver_draws_it(tmp_path, monkeypatch):
    """Inside a step the bar's state lands in the progress file (only while the step runs);
    a driver without a terminal prints it once as a plain line with rate and ETA, not at
    every poll; on a terminal it draws a bar."""
    monkeypatch.setattr(console, "SHARE_EVERY", 0.05)
    share = tmp_path / console.PROGRESS
    assert console.read_progress(share) is None
    with console.step_output(tmp_path / console.LOG, "train/vim-Hed-1a2b", share=share):
        bar = console.bar(10, "train", unit="step", initial=2)
        bar.update(3)
        state = _wait_for(share, 5)
        assert (state.total, state.initial, state.unit) == (10, 2, "step")
        assert state.elapsed >= 0

        plain = io.StringIO()
        with console.RemoteBars(plain) as bars:
            for _ in range(3):  # three polls, one line
                bars.show({"train/vim-Hed-1a2b": tmp_path, "score/not-started": tmp_path / "x"})
            bars.done("train/vim-Hed-1a2b", "[1/2] train/vim-Hed-1a2b done in 1.0 s")
        lines = plain.getvalue().splitlines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("train/vim-Hed-1a2b:  50%|") and "5/10 [" in lines[0]
        assert "<" in lines[0] and "step/s]" in lines[0]  # an ETA and a rate
        assert lines[1] == "[1/2] train/vim-Hed-1a2b done in 1.0 s"

        controller, terminal = os.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        with os.fdopen(terminal, "w") as tty, console.RemoteBars(tty) as bars:
            bars.show({"train/vim-Hed-1a2b": tmp_path})
            tty.flush()
            assert select.select([controller], [], [], 10)[0], "nothing drawn on the terminal"
            drawn = os.read(controller, 65536).decode()
        os.close(controller)
        assert "train/vim-Hed-1a2b:  50%|" in drawn and "5/10" in drawn
        bar.close()
    assert not share.exists()  # the step ended: nothing left for a driver to show
