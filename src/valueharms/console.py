"""What a study run shows on the terminal. While a step runs, everything written to the
process's stdout and stderr (transformers' log dicts, warnings, library logging, nested bars,
also from C code and subprocesses) goes to the step's ``log.txt``; only the step's own bar
(:func:`bar`) and the executor's lines reach the terminal. ``verbose`` copies the log there too."""
from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

LOG = "log.txt"

_console: TextIO | None = None  # the terminal while a step's output is redirected
_label: str | None = None  # the step's line, e.g. "[3/9] generate/base-1a2b3c4d5e6f"


def stream() -> TextIO:
    """Where progress bars belong: the terminal, also while a step's output goes to its log."""
    return _console or sys.stderr


def bar(total: int, desc: str, **options):
    """A tqdm bar on the terminal. Inside a step it is labelled with the step and cleared when
    done (the executor then prints the step's one line)."""
    from tqdm import tqdm

    if _label is not None:
        desc, options = _label, {**options, "leave": False}
    return tqdm(total=total, desc=desc, file=stream(), dynamic_ncols=True, **options)


@contextmanager
def step_output(log: Path, label: str, verbose: bool = False) -> Iterator[None]:
    """Send file descriptors 1 and 2 to ``log`` (appended: a resumed step keeps its earlier
    log) for the duration. File descriptors rather than sys.stdout, because transformers'
    logging handler and C extensions hold their own reference to the original stream.
    An error's traceback is written to the log too before it propagates."""
    global _console, _label
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(2), "w", buffering=1)
    with open(log, "ab") as file:
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
    follower = _Follower(log, console) if verbose else None
    _console, _label = console, label
    try:
        yield
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        if follower:
            follower.stop()
        _console, _label = None, None
        console.close()


class _Follower(threading.Thread):
    """Copies what is appended to a log file onto the terminal (``-v``). Following the file
    rather than a pipe: a subprocess still holding the descriptor cannot make it hang."""

    def __init__(self, log: Path, console: TextIO):
        super().__init__(daemon=True)
        self.file, self.console, self.done = open(log, "rb"), console, threading.Event()
        self.file.seek(0, os.SEEK_END)
        self.start()

    def run(self) -> None:
        while True:
            finishing = self.done.is_set()  # read once more after the step ended
            chunk = self.file.read()
            if chunk:
                self.console.write(chunk.decode(errors="replace"))
            elif finishing:
                break
            else:
                self.done.wait(0.2)
        self.file.close()

    def stop(self) -> None:
        self.done.set()
        self.join()
