"""The live table's arithmetic on a study's trials (what it shows on a terminal: tests/sweeps/test_ui.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from contrastlab.sweeps.config import SweepConfig
from contrastlab.sweeps.live import duration, standing, table
from contrastlab.sweeps.storage import SURPLUS_ATTR
from contrastlab.sweeps.trial import Sweep

T0 = datetime(2026, 1, 1, 12, 0, 0)


def trial(number: int, state: TrialState, start: int, end: int | None = None, value=None, **attrs):
    made = create_trial(
        state=state,
        value=value,
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.0, 1.0)},
        user_attrs=attrs.pop("user_attrs", {}),
        system_attrs=attrs.pop("system_attrs", {}),
    )
    made.number = number
    made.datetime_start = T0 + timedelta(seconds=start)
    made.datetime_complete = None if end is None else T0 + timedelta(seconds=end)
    return made


def sweep(direction: str, n_trials: int | None, deadline: float | None = None) -> Sweep:
    config = SweepConfig(Path("s.yaml"), "s", {}, {}, "val/knn_top1", direction, n_trials=n_trials)
    return Sweep(config, Path("base.yaml"), "sqlite://", "sqlite://", "parent", n_trials, deadline)


TRIALS = [
    trial(0, TrialState.COMPLETE, 0, 100, value=0.8),
    trial(1, TrialState.PRUNED, 0, 40),
    trial(2, TrialState.COMPLETE, 100, 160, value=0.9),
    trial(3, TrialState.FAIL, 40, 60),  # failed for good: counted
    trial(4, TrialState.FAIL, 60, 70),  # its worker died, and trial 6 runs it again: not counted
    trial(5, TrialState.RUNNING, 160),
    trial(6, TrialState.RUNNING, 170, system_attrs={"retry_history": [4]}),
    trial(7, TrialState.FAIL, 170, 170, user_attrs={SURPLUS_ATTR: True}),  # asked past n_trials: not counted
]


def test_counts_best_and_time_left():
    now = (T0 + timedelta(seconds=180)).timestamp()
    state = standing(TRIALS, sweep("maximize", n_trials=10), workers=2, now=now)
    assert (state.running, state.complete, state.pruned, state.failed) == (2, 2, 1, 1)
    assert state.best == (0.9, 2)
    # the finished trials' mean is (100 + 40 + 60 + 20) / 4 = 55 s; 10 - 4 finished - 2 running = 4 to start;
    # the running ones have done 20 and 10 s of it: (4 * 55 + 35 + 45) / 2 workers
    assert state.seconds_left == (4 * 55 + 35 + 45) / 2
    assert standing(TRIALS, sweep("minimize", n_trials=10), workers=2, now=now).best == (0.8, 0)
    capped = standing(TRIALS, sweep("maximize", n_trials=10, deadline=now + 30), workers=2, now=now)
    assert capped.seconds_left == 30  # no trial starts after the timeout
    assert standing(TRIALS, sweep("maximize", n_trials=None), workers=2, now=now).seconds_left is None


def test_nothing_finished_leaves_the_time_unknown_and_the_table_says_so():
    state = standing([trial(0, TrialState.RUNNING, 0)], sweep("maximize", n_trials=3), workers=1, now=T0.timestamp())
    header, values = table(state, sweep("maximize", n_trials=3))
    assert header.split() == ["running", "complete", "pruned", "failed", "finished", "best", "val/knn_top1", "time",
                              "left"]  # fmt: skip
    assert values.split() == ["1", "0", "0", "0", "0/3", "-", "-"]
    assert header.index("best") == values.index("-")  # the columns line up


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (4.4, 59.6, 61, 3600 + 125)] == ["4 s", "1 min 0 s", "1 min 1 s", "1 h 2 min"]
