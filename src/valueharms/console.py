"""What a study run shows on the terminal. While a step runs, everything written to the
process's stdout and stderr (transformers' log dicts, warnings, library logging, nested bars,
also from C code and subprocesses) goes to the step's ``log.txt``; only the step's own bar
(:func:`bar`) and the executor's lines reach the terminal. ``verbose`` copies the log there too.

A step run as a Ray task has no terminal the driver shows, so it also shares its bar's state
in a small file in its folder (:data:`PROGRESS`), and the driver draws that
(:class:`RemoteBars`)."""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .files import atomic_write_text

if TYPE_CHECKING:
    from tqdm import tqdm

LOG = "log.txt"
PROGRESS = ".progress.json"  # hidden: never one of the step's outputs (plan.outputs)
SHARE_EVERY = 1.0  # seconds between writes of a step's progress file, and between driver polls
PLAIN_EVERY = 30.0  # seconds between a running step's lines when the driver's stderr is no tty

_console: TextIO | None = None  # the terminal while a step's output is redirected
_label: str | None = None  # the step's line, e.g. "[3/9] generate/base-1a2b3c4d5e6f"
_bar = None  # the step's latest bar, which _Sharer writes to the progress file


def stream() -> TextIO:
    """Where progress bars belong: the terminal, also while a step's output goes to its log."""
    return _console or sys.stderr


def bar(total: int, desc: str, **options):
    """A tqdm bar on the terminal. Inside a step it is labelled with the step and cleared when
    done (the executor then prints the step's one line)."""
    from tqdm import tqdm

    global _bar
    if _label is not None:
        desc, options = _label, {**options, "leave": False}
    shown = tqdm(total=total, desc=desc, file=stream(), dynamic_ncols=True, **options)
    if _label is not None:
        _bar = shown
    return shown


@contextmanager
def step_output(log: Path, label: str, verbose: bool = False,
                share: Path | None = None) -> Iterator[None]:
    """Send file descriptors 1 and 2 to ``log`` (appended: a resumed step keeps its earlier
    log) for the duration. File descriptors rather than sys.stdout, because transformers'
    logging handler and C extensions hold their own reference to the original stream.
    An error's traceback is written to the log too before it propagates. ``share``: a
    progress file that holds the step's bar while it runs and is removed when it ends."""
    global _console, _label, _bar
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(2), "w", buffering=1)
    with open(log, "ab") as file:
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
    follower = _Follower(log, console) if verbose else None
    sharer = _Sharer(share) if share else None
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
        if sharer:
            sharer.stop()
        _console, _label, _bar = None, None, None
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


@dataclass(frozen=True)
class Progress:
    """A step's bar as its own process last shared it: items done (``initial`` of them done
    before this run, e.g. by a killed earlier one), of ``total``, in ``elapsed`` seconds."""

    n: float
    total: float | None
    initial: float
    elapsed: float
    unit: str

    def line(self, name: str) -> str:
        """The bar as one plain line, with rate and ETA: ``name  50%|#####     | 2/4 [...]``."""
        from tqdm import tqdm

        return tqdm.format_meter(self.n, self.total, self.elapsed, prefix=name, unit=self.unit,
                                 initial=self.initial, ascii=True)


def write_progress(path: Path, bar) -> None:
    """Share a tqdm ``bar``'s state in ``path``, atomically: a reader never sees half a file."""
    state = bar.format_dict
    progress = Progress(n=state["n"], total=state["total"], initial=state.get("initial") or 0,
                        elapsed=round(state["elapsed"], 3), unit=state["unit"] or "it")
    atomic_write_text(path, json.dumps(asdict(progress)))


def read_progress(path: Path) -> Progress | None:
    """The state in a progress file; None when there is none (the step has not started its
    bar, or has ended)."""
    try:
        return Progress(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


class _Sharer(threading.Thread):
    """Writes the step's bar to its progress file every :data:`SHARE_EVERY` seconds, from a
    thread so that the bar's own updates stay as cheap as they are; removes the file at the
    end."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.done = path, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(SHARE_EVERY):
            shown = _bar  # once: the step may start another bar meanwhile
            if shown is not None and not shown.disable:  # a closed bar is disabled too
                write_progress(self.path, shown)

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.path.unlink(missing_ok=True)


class RemoteBars:
    """The driver's view of steps that run in other processes, perhaps on other nodes: one
    live bar per running step on a terminal, drawn from its progress file; on a pipe or log
    file a plain line when a step's bar first appears and every :data:`PLAIN_EVERY` seconds,
    never a line per update."""

    def __init__(self, file: TextIO | None = None):
        self.file = file or sys.stderr
        self.tty = self.file.isatty()
        self.bars: dict[str, tqdm] = {}
        self.printed: dict[str, float] = {}

    def __enter__(self) -> RemoteBars:
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.bars):
            self.bars.pop(name).close()

    def show(self, running: dict[str, Path]) -> None:
        """Draw the bars of ``running`` (step id: its folder) that have a progress file."""
        for name, folder in running.items():
            state = read_progress(folder / PROGRESS)
            if state is None:
                continue
            if self.tty:
                self._draw(name, state)
            elif time.monotonic() - self.printed.get(name, -math.inf) >= PLAIN_EVERY:
                self.printed[name] = time.monotonic()
                print(state.line(name), file=self.file, flush=True)

    def done(self, name: str, message: str) -> None:
        """Take the step's bar off and print ``message``, its one line."""
        from tqdm import tqdm

        if name in self.bars:
            self.bars.pop(name).close()
        tqdm.write(message, file=self.file)
        self.file.flush()

    def _draw(self, name: str, state: Progress) -> None:
        from tqdm import tqdm

        if name not in self.bars:
            self.bars[name] = tqdm(total=state.total, initial=state.initial, desc=name,
                                   unit=state.unit, file=self.file, leave=False,
                                   dynamic_ncols=True)
        shown = self.bars[name]
        shown.total, shown.n = state.total, state.n
        # tqdm takes elapsed time and so rate and ETA from its start time; the step's own is
        # the one that counts (this bar started when the driver first saw the file).
        shown.start_t = time.time() - state.elapsed
        shown.refresh()
