"""Where a command's lines go: the result line, coarse progress and error paragraphs.

A plain ``svf <command>`` prints everything to the terminal: the result line (``svf evaluate: ... mIoU 41.3``)
on stdout, progress on stderr. ``svf --log FILE <command>`` (what every Snakemake rule runs) sends all output,
tracebacks included, to FILE and prints only the result line, a progress line at most every
``PROGRESS_INTERVAL_S`` seconds and an error paragraph to the terminal, so a pipeline run shows one line per job
with its result instead of nothing (Snakemake leaves the jobs' stderr on its console).
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

#: Seconds between two progress lines on the terminal of a logged command (every line goes to the log).
PROGRESS_INTERVAL_S = 60.0


class _Session:
    command: str = ""
    terminal: TextIO | None = None  # the terminal of a logged command (None: stdout/stderr are the terminal)
    last_progress: float = float("-inf")


_SESSION = _Session()


def _prefix() -> str:
    return f"svf {_SESSION.command}: " if _SESSION.command else "svf: "


def _to_terminal(line: str) -> None:
    if _SESSION.terminal is not None:
        try:
            _SESSION.terminal.write(line + "\n")
            _SESSION.terminal.flush()
        except OSError:
            pass


def result(text: str) -> None:
    """The command's outcome, one line: on stdout (the log) and on the terminal of a logged command."""
    line = _prefix() + text
    print(line, flush=True)
    _to_terminal(line)


def progress(text: str, force: bool = False) -> None:
    """How far a long command is: every line on stderr (the log); on the terminal of a logged command at most one
    line per ``PROGRESS_INTERVAL_S`` (``force``: always, e.g. the first line)."""
    line = _prefix() + text
    print(line, file=sys.stderr, flush=True)
    now = time.monotonic()
    if force or now - _SESSION.last_progress >= PROGRESS_INTERVAL_S:
        _SESSION.last_progress = now
        _to_terminal(line)


def error(paragraph: str) -> None:
    """An error paragraph: on stderr (the log) and on the terminal of a logged command."""
    print(paragraph, file=sys.stderr, flush=True)
    _to_terminal(paragraph)


@contextmanager
def session(command: str, log: str | None = None) -> Iterator[None]:
    """Run one command: with ``log``, file descriptors 1 and 2 (Python's and any library's output) go to that file
    for the duration, and the terminal stays reachable through :func:`result`, :func:`progress`, :func:`error`."""
    saved = (_SESSION.command, _SESSION.terminal, _SESSION.last_progress)
    _SESSION.command, _SESSION.last_progress = command, time.monotonic()  # a job shorter than that: result only
    if log is None:
        _SESSION.terminal = None
        try:
            yield
        finally:
            _SESSION.command, _SESSION.terminal, _SESSION.last_progress = saved
        return
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    originals = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        _SESSION.terminal = terminal
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(originals[0], 1)
        os.dup2(originals[1], 2)
        for fd in (*originals, log_fd):
            os.close(fd)
        terminal.close()
        _SESSION.command, _SESSION.terminal, _SESSION.last_progress = saved


__all__ = ["PROGRESS_INTERVAL_S", "error", "progress", "result", "session"]
