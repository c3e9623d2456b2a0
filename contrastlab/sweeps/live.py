"""On a terminal, `contrastlab sweep` keeps a live table of its study below the lines its workers print:

     running  complete  pruned  failed  finished  best val/knn_top1     time left
           2         5       3       0     8/20   0.9312 (trial 4)      ~6 min 40 s

redrawn in place every second from the study's storage, so trials that workers on other machines run are counted
too. The workers' lines (`trial 3 started: ...`) scroll above it. In a log (a file, a pipe) nothing is drawn and
the lines are all there is, as before.

The time left is the finished trials' mean duration times the trials still to run, less what the running ones
have done, spread over the trials that run at once; a timeout caps it. Until a trial finishes it is unknown.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from contrastlab.platform.terminal import on_terminal
from contrastlab.sweeps.storage import SURPLUS_ATTR, open_storage, outcome, retried_numbers
from contrastlab.sweeps.trial import Sweep

REDRAW_EVERY = 1.0  # seconds
UP_AND_CLEAR = "\x1b[{}F\x1b[J"  # to the start of the line `n` lines up, then clear to the end of the screen


@dataclass
class Standing:
    """Where a study stands: its trials by state, the best one, and an estimate of the seconds left."""

    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best: tuple[float, int] | None = None  # (value, trial number)
    seconds_left: float | None = None


def standing(trials, sweep: Sweep, workers: int, now: float) -> Standing:
    """The study's standing, from its trials (Optuna's FrozenTrials); retries and surplus trials are not counted."""
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    state = Standing()
    durations, running_for = [], []
    for trial in trials:
        ended = outcome(trial, retried)
        if trial.state == TrialState.RUNNING and not trial.user_attrs.get(SURPLUS_ATTR):
            state.running += 1
            running_for.append(now - trial.datetime_start.timestamp() if trial.datetime_start else 0.0)
        elif ended in ("complete", "pruned", "failed"):
            setattr(state, ended, getattr(state, ended) + 1)
            if trial.datetime_start and trial.datetime_complete:
                durations.append((trial.datetime_complete - trial.datetime_start).total_seconds())
        if ended == "complete" and trial.value is not None and _better(trial.value, state.best, sweep):
            state.best = (trial.value, trial.number)
    finished = state.complete + state.pruned + state.failed
    if durations and sweep.n_trials is not None:
        mean = sum(durations) / len(durations)
        to_start = max(0, sweep.n_trials - finished - state.running)
        work = to_start * mean + sum(max(0.0, mean - elapsed) for elapsed in running_for)
        state.seconds_left = work / max(1, workers, state.running)
    if sweep.deadline is not None:
        until_timeout = max(0.0, sweep.deadline - now)
        state.seconds_left = until_timeout if state.seconds_left is None else min(state.seconds_left, until_timeout)
    return state


def _better(value: float, best: tuple[float, int] | None, sweep: Sweep) -> bool:
    if best is None:
        return True
    return value > best[0] if sweep.config.direction == "maximize" else value < best[0]


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def table(state: Standing, sweep: Sweep) -> list[str]:
    """The table's two lines: its header and the study's standing."""
    best = "-" if state.best is None else f"{state.best[0]:.4f} (trial {state.best[1]})"
    left = "-" if state.seconds_left is None else f"~{duration(state.seconds_left)}"
    finished = state.complete + state.pruned + state.failed
    planned = f"{finished}/{sweep.n_trials}" if sweep.n_trials is not None else str(finished)
    metric = f"best {sweep.config.metric}"
    width = max(len(metric), len(best)) + 2
    header = f"{'running':>8}{'complete':>10}{'pruned':>8}{'failed':>8}{'finished':>10}  {metric:<{width}}time left"
    values = (
        f"{state.running:>8}{state.complete:>10}{state.pruned:>8}{state.failed:>8}{planned:>10}  {best:<{width}}{left}"
    )
    return [header, values]


class LiveTable:
    """While open, what this process and its workers write to stdout and stderr goes through a pipe to a thread,
    which prints it above the table and redraws the table every REDRAW_EVERY seconds."""

    def __init__(self, sweep: Sweep, workers: int) -> None:
        self.sweep, self.workers = sweep, workers
        self._stop = threading.Event()
        self._lines: list[str] = []  # output to print above the table at the next draw
        self._pending, self._ended = b"", False  # the start of a line still being written; the pipe closed
        self._shown: list[str] = []  # the table's lines on the screen now
        self._storage = self._study_id = None

    def __enter__(self) -> LiveTable:
        sys.stdout.flush()
        sys.stderr.flush()
        self._terminal = os.fdopen(os.dup(1), "w", buffering=1, errors="replace")
        self._saved = {fd: os.dup(fd) for fd in (1, 2) if os.isatty(fd)}
        self._read, write = os.pipe()
        for fd in self._saved:  # spawned workers inherit these, and so does the trials' warm server
            os.dup2(write, fd)
        os.close(write)
        self._thread = threading.Thread(target=self._run, name="sweep-live-table", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._stop.set()
        self._thread.join()
        os.close(self._read)
        self._terminal.close()

    def _run(self) -> None:
        next_draw = 0.0
        while True:
            stopping = self._stop.is_set()  # read before the last look at the pipe: nothing written is lost
            if self._take_lines(0 if stopping else 0.2) and stopping:
                continue  # the last lines first
            now = time.time()
            if self._lines or now >= next_draw or stopping:
                self._draw(self._standing(now))
                next_draw = now + REDRAW_EVERY
            if stopping:
                if self._pending:
                    self._lines.append(self._pending.decode(errors="replace"))
                    self._draw(None)
                return
            if self._ended:  # every writer closed the pipe: wait for the stop
                self._stop.wait(REDRAW_EVERY)

    def _take_lines(self, timeout: float) -> bool:
        """Whether the pipe gave output within `timeout` seconds; its whole lines are kept for the next draw."""
        if self._ended or not select.select([self._read], [], [], timeout)[0]:
            return False
        chunk = os.read(self._read, 65536)
        if not chunk:
            self._ended = True
            return False
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        self._lines += [line.decode(errors="replace") for line in lines]
        return True

    def _standing(self, now: float) -> Standing | None:
        """The study's standing now, or None while its storage cannot be read (busy or briefly locked)."""
        try:
            if self._storage is None:
                self._storage = open_storage(self.sweep.storage_url)
                self._study_id = self._storage.get_study_id_from_name(self.sweep.config.name)
            trials = self._storage.get_all_trials(self._study_id, deepcopy=False)
        except Exception:
            return None
        return standing(trials, self.sweep, self.workers, now)

    def _draw(self, state: Standing | None) -> None:
        """The new lines above the table, then the table (as it was when the study could not be read)."""
        out = self._terminal
        if self._shown:
            out.write(UP_AND_CLEAR.format(len(self._shown)))
        for line in self._lines:
            out.write(line + "\n")
        self._lines = []
        if state is not None:
            try:
                width = os.get_terminal_size(out.fileno()).columns - 1
            except OSError:
                width = 200
            self._shown = [line[:width] for line in table(state, self.sweep)]  # a wrapped line would break the redraw
        out.write("".join(f"{line}\n" for line in self._shown))
        out.flush()


@contextlib.contextmanager
def live_table(sweep: Sweep, workers: int) -> Iterator[None]:
    """The live table on a terminal; nothing elsewhere."""
    if not on_terminal():
        yield
        return
    with LiveTable(sweep, workers):
        yield
