from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from contrastlab.platform.cpus import share_cores
from contrastlab.platform.warm import SOCKET_ENV, WarmProcesses

# pytester: tests of the skip gate run small suites of their own; skip_gate: a skip not in .ci/allowed-skips.txt
# fails the run
pytest_plugins = ("pytester", "tests.skip_gate")

REPO = Path(__file__).resolve().parents[1]
DIGITS_CONFIG = REPO / "configs" / "simclr" / "digits.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"
# A short digits run: 2 epochs, validation each epoch, system metrics sampled fast enough to appear.
QUICK = [
    "--trainer.max_epochs",
    "2",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--tracking.system_metrics_interval",
    "0.5",
    "--model.init_args.proj_hidden_dim",
    "128",
]


def pytest_configure(config):
    """Under `pytest -n N` every worker, and each `contrastlab` it starts, gets 1/N of the cores. The MLflow
    servers the tests start run no job consumers (six processes each, importing mlflow: seconds of CPU)."""
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share_cores(int(workers))
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The longest files, longest first (per-file --durations on 2 cores, 2026-12-03). `make test` runs them first
# (`--dist loadfile --no-loadscope-reorder`): one file runs on one worker, and xdist's default order (most tests
# first) left the long one-test sweep files for the end, one worker running them while the other idled.
LONGEST_FILES = (
    "tests/platform/test_cli.py",
    "tests/sweeps/test_distributed.py",
    "tests/platform/test_hardening.py",
    "tests/platform/test_resume_ddp.py",
    "tests/sweeps/test_sweep.py",
    "tests/test_demo.py",
    "tests/platform/test_resume.py",
    "tests/sweeps/test_grid.py",
    "tests/methods/test_ddp_methods.py",
    "tests/benchmarks/test_quality.py",
    "tests/sweeps/test_ui.py",
    "tests/eval/test_eval.py",
    "tests/methods/test_vit.py",
    "tests/eval/test_eval_table.py",
    "tests/test_toy_modality.py",
    "tests/methods/test_cpc.py",
    "tests/modules/test_gradcache.py",
)


def pytest_collection_modifyitems(config, items):
    """The LONGEST_FILES first, in that order; every other file after them, in collection order."""
    rank = {path: i for i, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(autouse=True)
def no_tracking_uri_left_behind():
    """MLflow's set_tracking_uri, which Lightning's logger calls, exports MLFLOW_TRACKING_URI to this process: after
    an in-process run, every process a later test starts would otherwise use that run's store."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@functools.cache
def empty_store() -> Path:
    """An MLflow store with its tables made, once per test process: making them (MLflow's migrations) costs about
    2 s of CPU, which every test writing runs to a new folder, and every process it starts there, would pay."""
    import mlflow

    folder = Path(tempfile.mkdtemp(prefix="contrastlab-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments(max_results=1)
    return folder / "mlflow.db"


def give_store(folder: Path) -> Path:
    """Unless it has one, `folder`'s default store (mlruns/mlflow.db) starts as a copy of the empty one: the tables
    MLflow would make on first use, with no experiment but its Default. Returns `folder`."""
    database = folder / "mlruns" / "mlflow.db"
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store(), database)
    return folder


def uses_default_store(args: tuple[str, ...] | list[str], cwd: Path) -> bool:
    """Whether `contrastlab ARGS` in `cwd` writes to cwd's default store (it names no other)."""
    for i, arg in enumerate(args):
        if arg.split("=", 1)[0] in ("--tracking-uri", "--tracking.uri"):
            named = arg.split("=", 1)[1] if "=" in arg else args[i + 1]
            return named in (f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", "sqlite:///mlruns/mlflow.db")
    return True


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WARM_PRELOAD = [
    "contrastlab.platform.cli",
    "contrastlab.sweeps.study",
    "contrastlab.sweeps.pruning",
    "contrastlab.eval.cli",
]


@functools.cache
def warm_contrastlab() -> WarmProcesses:
    """This test process's warm server for `contrastlab` commands (contrastlab/platform/warm.py, as sweep workers
    use it): each command is a process of its own, forked from a server that has done the seconds of imports a
    new interpreter would. tests/test_imports.py still starts new interpreters."""
    processes = WarmProcesses(WARM_PRELOAD, entry="contrastlab.cli:main", main_module="contrastlab", cwd=REPO)
    atexit.register(processes.close)
    return processes


_more_clients: list[WarmProcesses] = []


def idle_warm_client() -> WarmProcesses:
    """A client of this test process's warm server with no command running: commands started together (a race on
    a new store, two machines' sweeps) are forked from the one server, each by a client of its own."""
    first = warm_contrastlab()
    for client in [first, *_more_clients]:
        if not client.busy:
            return client
    first.start_server()
    client = WarmProcesses(WARM_PRELOAD, entry="contrastlab.cli:main", main_module="contrastlab", server=first.server)
    _more_clients.append(client)
    return client


def warm_server_env() -> dict[str, str]:
    """The variable that makes a process started here (a benchmark script, say) fork its commands from this test
    process's warm server."""
    first = warm_contrastlab()
    first.start_server()
    return {SOCKET_ENV: first.server} if first.server else {}


class Started:
    """A `contrastlab` command running in the background (`start_cli`): Popen's pid, poll, wait and returncode, and
    communicate() for its output as text."""

    def __init__(self, handle, args: tuple[str, ...], out: Path, err: Path) -> None:
        self._handle, self.args, self._out, self._err = handle, args, out, err
        self.pid = handle.pid

    @property
    def returncode(self) -> int | None:
        return self._handle.returncode

    def poll(self) -> int | None:
        return self._handle.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._handle.wait(timeout)

    def printed(self) -> str:
        """What it has printed so far, stdout then stderr."""
        return self._out.read_text(errors="replace") + self._err.read_text(errors="replace")

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self._handle.kill()
            self.wait()
            raise
        return self._out.read_text(errors="replace"), self._err.read_text(errors="replace")


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, new_session: bool = False) -> Started:
    """`contrastlab ARGS` started in `cwd`, as a process of its own; `new_session`: in a process group of its own
    (a killpg then reaches every DDP rank, as on a real node)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | (env or {})
    folder = Path(tempfile.mkdtemp(prefix="contrastlab-output-"))
    out, err = folder / "stdout", folder / "stderr"
    handle = idle_warm_client().start(list(args), env, out, err, cwd=cwd, new_session=new_session)
    return Started(handle, args, out, err)


def run_cli(*args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`contrastlab ARGS` as a process of its own, as a user runs it, in `cwd`."""
    if uses_default_store(args, cwd):
        give_store(cwd)
    started = start_cli(*args, cwd=cwd)
    stdout, stderr = started.communicate(timeout=timeout)
    proc = subprocess.CompletedProcess(["contrastlab", *args], started.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"contrastlab {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def run_on_terminal(
    *args: str, cwd: Path, stdout: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`contrastlab ARGS` run as from a terminal (a pseudo-terminal of 100 columns): its stderr, and its stdout
    unless `stdout` names a file to redirect it to. The CompletedProcess's stdout is what the terminal showed;
    its stderr is the file's text (empty without one)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    if uses_default_store(args, cwd):
        give_store(cwd)
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"TERM": "xterm"}
    tty = Path(os.ttyname(terminal))
    handle = idle_warm_client().start(list(args), env, stdout or tty, tty, cwd=cwd)
    shown, deadline = bytearray(), time.monotonic() + timeout
    try:
        while True:
            ended = handle.poll() is not None
            while select.select([main], [], [], 0 if ended else 0.2)[0]:
                shown += os.read(main, 65536)  # read as it comes: a full terminal would block the command
            if ended:
                break
            if time.monotonic() > deadline:
                handle.kill()
                handle.wait()
                raise AssertionError(f"contrastlab {' '.join(args)} ran past {timeout} s:\n{shown[-4000:].decode()}")
    finally:
        os.close(main)
        os.close(terminal)
    text = shown.decode(errors="replace")
    piped = stdout.read_text(errors="replace") if stdout else ""
    return subprocess.CompletedProcess(["contrastlab", *args], handle.returncode, text, piped)


def fit(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`contrastlab fit -c configs/simclr/digits.yaml` with the QUICK settings and `args` on top."""
    return run_cli("fit", "-c", str(DIGITS_CONFIG), *QUICK, *args, cwd=cwd, check=check)


@pytest.fixture
def cli_here(request, monkeypatch, capsys):
    """`contrastlab ARGS` run inside this test process: the same entry point and error handling as a user's
    process, without a fresh interpreter's imports (several seconds each). Returns the exit code (0 when it
    ran through) and stderr. A run that writes to a store names it by its absolute path (`in_process_store`).
    The store starts made (`give_store`) unless the test is marked `new_store`."""

    def run(*args: str, cwd: Path) -> tuple[int, str]:
        if uses_default_store(args, cwd) and not request.node.get_closest_marker("new_store"):
            give_store(cwd)
        from contrastlab.cli import main

        monkeypatch.chdir(cwd)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.setattr(sys, "argv", ["contrastlab", *args])
        capsys.readouterr()
        captured = (sys.stdout, sys.stderr)
        code = 0
        try:
            with warnings.catch_warnings():
                main(list(args))
        except SystemExit as stop:
            code = stop.code or 0
        finally:
            # loggers set up during the call hold this test's capture streams, which close with the test
            for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
                for handler in getattr(logger, "handlers", []):
                    if isinstance(handler, logging.StreamHandler) and handler.stream in captured:
                        handler.setStream(sys.__stderr__)
        return code, capsys.readouterr().err

    return run


def in_process_store(cwd: Path) -> list[str]:
    """Options for a run inside the test process: the default store of `cwd` named by its absolute path (MLflow
    keeps one database engine per URI string in a process, so the relative default would reach the first test
    folder's store), and no system-metrics sampler thread."""
    return ["--tracking-uri", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", "--tracking.system_metrics_interval", "0"]


def the_error_line(code: int, stderr: str) -> str:
    """The one `contrastlab: error:` line a refused command printed, after checking it exited 2 without a traceback."""
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("contrastlab: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return errors[0]


def store_client(cwd: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")


@pytest.fixture
def digits_info():
    from contrastlab.datamodules.vision import Digits

    return Digits().info


@pytest.fixture(scope="session")
def spoken_digits(tmp_path_factory) -> Path:
    """200 espeak-ng spoken digits in FSDD's layout (10 digits x 4 voices x 5 takes), made once per session."""
    from tests.speech import synthesise_digits

    return synthesise_digits(tmp_path_factory.mktemp("spoken_digits"))
