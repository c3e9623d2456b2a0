"""Warm processes: commands forked from a server that did the imports, each a process of its own, and the
route through a new interpreter wherever forking would be unsafe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from contrastlab.platform.warm import SOCKET_ENV, WarmProcesses, fork_unsafe_reason
from tests.conftest import REPO

COMMANDS = "tests.platform.warm.commands"


@contextmanager
def warm(*preload: str, fresh: bool = False):
    processes = WarmProcesses(list(preload), entry=f"{COMMANDS}:main", main_module=COMMANDS, fresh=fresh)
    try:
        yield processes
    finally:
        processes.close()


def env(**values: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **values}


def report(processes: WarmProcesses, tmp_path, name: str = "report", *keys: str, **values: str) -> dict:
    log = tmp_path / f"{name}.log"
    assert processes.run(["report", *keys], env(**values), log, cwd=tmp_path) == 0, log.read_text()
    return json.loads(log.read_text().splitlines()[-1])


def rss_kib(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(status.split("VmRSS:")[1].split()[0])


def gone(pid: int, within: float) -> bool:
    """True once the process has ended (a zombie waiting for init to reap it has ended)."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_command_runs_forked_from_the_server_in_its_own_folder_environment_and_log(tmp_path):
    with warm() as processes:
        forked = report(processes, tmp_path, "forked", "GREETING", GREETING="hello")
        server = processes.server_pid
        assert forked["ppid"] == server and forked["pid"] != server
    with warm(fresh=True) as processes:
        fresh = report(processes, tmp_path, "fresh", "GREETING", GREETING="hello")
        assert fresh["ppid"] == os.getpid() and processes.server_pid is None
    for ran in (forked, fresh):
        assert ran["cwd"] == str(tmp_path) and ran["env"] == {"GREETING": "hello"}
    # what Lightning's DDP launcher reads to start the other ranks is what `python -m` gives
    assert forked["main_spec"] == fresh["main_spec"] == COMMANDS
    assert forked["argv"][1:] == fresh["argv"][1:] == ["report", "GREETING"]


def test_exit_codes_crashes_and_memory_end_with_the_child_and_the_server_goes_on(tmp_path):
    log = tmp_path / "out.log"
    with warm() as processes:
        assert processes.run(["exit", "3"], env(), log) == 3
        assert processes.run(["raise"], env(), log) == 1
        assert "RuntimeError: a bug in the command" in log.read_text()
        assert processes.run(["signal", "SIGSEGV"], env(), log) == -signal.SIGSEGV
        server = processes.server_pid
        before = rss_kib(server)
        allocating = processes.start(["allocate", "400"], env(), log)
        assert allocating.wait() == 0 and allocating.cpu_seconds > 0.01  # as the server measured it: 100,000 faults
        assert rss_kib(server) - before < 50 * 1024  # the 400 MB went back with the child
        assert report(processes, tmp_path)["ppid"] == server  # the same server, still forking


def test_the_server_imports_what_a_child_imported_for_the_next_one(tmp_path):
    with warm() as processes:
        assert "xml.dom.minidom" not in report(processes, tmp_path, "first")["loaded"]
        assert processes.run(["import", "xml.dom.minidom"], env(), tmp_path / "import.log") == 0
        assert "xml.dom.minidom" in report(processes, tmp_path, "second")["loaded"]


def test_a_killed_command_reports_its_signal_and_a_dead_server_takes_its_child_along(tmp_path):
    log = tmp_path / "sleep.log"
    with warm() as processes:
        processes.start_server()  # from this thread: a server dies with the thread that started it
        codes = []

        def sleep_in_background(seconds="60"):
            worker = threading.Thread(target=lambda: codes.append(processes.run(["sleep", seconds], env(), log)))
            worker.start()
            deadline = time.time() + 60
            while processes.pid is None or "sleeping" not in (log.read_text() if log.exists() else ""):
                assert time.time() < deadline, "the command did not start"
                time.sleep(0.05)
            return worker, processes.pid

        worker, child = sleep_in_background()
        os.kill(child, signal.SIGKILL)
        worker.join(30)
        assert codes == [-signal.SIGKILL]

        log.unlink()
        worker, child = sleep_in_background()
        os.kill(processes.server_pid, signal.SIGKILL)
        worker.join(30)
        assert codes[-1] == -signal.SIGKILL
        assert gone(child, within=10)
        assert processes.off_reason == "the warm server died"
        assert report(processes, tmp_path)["ppid"] == os.getpid()  # later commands start new interpreters


@pytest.mark.parametrize(
    "preload, reason",
    [
        ("tests.platform.warm.starts_a_thread", "runs other threads (left-running)"),
        ("tests.platform.warm.initialises_cuda", "CUDA is initialised in the warm server"),
    ],
)
def test_where_forking_is_unsafe_the_command_runs_in_a_new_interpreter_and_says_why(tmp_path, capfd, preload, reason):
    with warm(preload) as processes:
        assert report(processes, tmp_path, "first")["ppid"] == os.getpid()
        assert reason in capfd.readouterr().err and reason in processes.off_reason
        assert report(processes, tmp_path, "second")["ppid"] == os.getpid()


def test_fork_unsafe_reason_is_none_in_a_bare_process_and_names_a_running_thread():
    assert fork_unsafe_reason() is None or "threads" in fork_unsafe_reason()  # pytest's own may run
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="a-running-thread")
    thread.start()
    try:
        assert "a-running-thread" in fork_unsafe_reason()
    finally:
        stop.set()
        thread.join()


def test_a_command_started_in_the_background_keeps_its_streams_apart_and_can_time_out(tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    with warm() as processes:
        command = processes.start(["raise"], env(), out, err, cwd=tmp_path)
        assert command.wait(timeout=60) == 1 and command.returncode == 1
        assert "a bug in the command" in err.read_text() and out.read_text() == ""
        command = processes.start(["sleep", "60"], env(), out, err, cwd=tmp_path, new_session=True)
        with pytest.raises(RuntimeError, match="one command at a time"):
            processes.start(["report"], env(), out)
        with pytest.raises(subprocess.TimeoutExpired):
            command.wait(timeout=0.5)
        assert os.getpgid(command.pid) == command.pid  # a session and process group of its own
        command.kill()
        assert command.wait(timeout=30) == -signal.SIGKILL and command.poll() == -signal.SIGKILL


def test_a_command_that_cannot_start_exits_1_and_the_server_forks_the_next(tmp_path):
    with warm() as processes:
        code = processes.run(["report"], env(), tmp_path / "out.log", cwd=tmp_path / "no such folder")
        assert code == 1 and "FileNotFoundError" in (tmp_path / "out.log").read_text()
        assert report(processes, tmp_path)["ppid"] == processes.server_pid


def test_clients_of_one_server_run_commands_at_the_same_time_and_its_children_find_it(tmp_path):
    with warm() as first:
        sleeping = first.start(["sleep", "60"], env(), tmp_path / "sleep.log")
        with warm() as second:  # no server named: it starts one of its own
            second.start_server()
            assert second.server not in (None, first.server)
        other = WarmProcesses([], entry=f"{COMMANDS}:main", main_module=COMMANDS, server=first.server)
        try:
            ran = report(other, tmp_path, "other", SOCKET_ENV)
            assert ran["ppid"] == first.server_pid == other.server_pid  # forked while the first command runs
            assert ran["env"] == {SOCKET_ENV: first.server}  # where its own commands (DDP ranks) are forked
        finally:
            other.close()
        assert sleeping.poll() is None
        sleeping.kill()
        assert sleeping.wait(timeout=30) == -signal.SIGKILL


def test_a_client_that_dies_takes_its_running_command_along_and_the_server_goes_on(tmp_path):
    with warm() as processes:
        processes.start_server()
        log = tmp_path / "sleep.log"
        client = f"""
import sys, time
from contrastlab.platform.warm import WarmProcesses
processes = WarmProcesses([], entry="{COMMANDS}:main", main_module="{COMMANDS}", server={processes.server!r})
command = processes.start(["sleep", "60"], {env()!r}, {str(log)!r})
print(command.pid, flush=True)
time.sleep(60)
"""
        proc = subprocess.Popen([sys.executable, "-c", client], stdout=subprocess.PIPE, text=True, cwd=REPO,
                                env=env())  # fmt: skip
        child = int(proc.stdout.readline())
        assert not gone(child, within=0.5)
        proc.kill()
        proc.wait()
        assert gone(child, within=10)
        assert report(processes, tmp_path)["ppid"] == processes.server_pid


def test_a_command_writes_to_descriptors_it_is_given(tmp_path):
    read, write = os.pipe()
    with warm() as processes:
        command = processes.start(["report"], env(), write, write, cwd=tmp_path)
        os.close(write)
        assert command.wait(timeout=60) == 0
        with os.fdopen(read) as pipe:
            assert json.loads(pipe.read().splitlines()[-1])["ppid"] == processes.server_pid
