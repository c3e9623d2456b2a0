"""Warm processes: commands forked from a server that has done the imports (warm_server.py), each a process of its
own, so that a sweep's trials and a trial's DDP ranks skip the seconds a new interpreter spends on imports.

A client of a server runs its commands one at a time. Where CONTRASTLAB_WARM_SERVER names a server (in every
process a server forked, and every process those start), a client connects to that one; elsewhere it starts its
own, which dies with the thread that started it. Where the server cannot start, dies or refuses to fork, the command
runs as `python -m main_module *argv`, the way it would without a server, and so do the commands after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from contrastlab.platform.parents import die_with_parent
from contrastlab.platform.warm_server import SOCKET_ENV, fork_unsafe_reason

__all__ = ["SOCKET_ENV", "ForkedCommand", "WarmProcesses", "fork_unsafe_reason"]

Stream = Path | int  # a file the output is appended to, or a descriptor it goes to


class ForkedCommand:
    """A command running as a child of a warm server, waited on as a `subprocess.Popen` is."""

    def __init__(self, processes: WarmProcesses, pid: int, args: list[str]) -> None:
        self._processes, self.pid, self.args = processes, pid, args
        self.returncode: int | None = None
        self.cpu_seconds: float | None = None  # user + system, once it has ended

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode, self.cpu_seconds = self._processes._code(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode, self.cpu_seconds = self._processes._code(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WarmProcesses:
    """A client of one warm server: starts commands one at a time, each in a child forked from the server.

    `fresh=True` always runs them in new interpreters. `server` names a server's socket to connect to; by default
    it is CONTRASTLAB_WARM_SERVER's, else a server of this client's own.
    """

    def __init__(
        self,
        preload: list[str],
        entry: str,
        main_module: str,
        fresh: bool = False,
        cwd: Path | None = None,
        server: str | None = None,
    ) -> None:
        self.preload, self.entry, self.main_module, self.cwd = preload, entry, main_module, cwd
        self.off_reason: str | None = "fresh processes asked for" if fresh else None
        self.server = server if server is not None else os.environ.get(SOCKET_ENV)
        self._owned: subprocess.Popen | None = None  # the server this client started, if it did
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock = threading.RLock()  # Lightning polls DDP ranks from a thread of its own
        self.server_pid: int | None = None
        self._running: ForkedCommand | subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The running command's process id."""
        running = self._running
        return running.pid if running is not None and running.returncode is None else None

    @property
    def busy(self) -> bool:
        """Whether a command of this client runs now (a client runs one at a time)."""
        with self._lock:
            return self._running is not None and self._running.poll() is None

    def start_server(self) -> None:
        """Start this client's server now, unless one is named: it imports for several seconds while the caller
        goes on, and clients connect to it at once (each waits for its first command until the imports are done).

        The server dies with the thread that starts it (Linux's parent-death signal follows the thread), so start it
        from the thread that lives as long as this client's use: the main thread of a worker.
        """
        if self.off_reason is not None or self.server is not None:
            return
        command = [sys.executable, "-m", "contrastlab.platform.warm_server", *self.preload]
        self._owned = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.cwd,
                                       preexec_fn=die_with_parent)  # fmt: skip
        line = self._owned.stdout.readline()
        if not line:
            return self._turn_off("the warm server did not start")
        self.server = json.loads(line)["socket"]
        return None

    def _connect(self) -> None:
        """Connect to the server and tell it what this client's commands are."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(self.server)
        except OSError as exc:
            return self._turn_off(f"the warm server at {self.server} cannot be reached ({exc.strerror})")
        creds = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.server_pid = struct.unpack("3i", creds)[0]
        reply = self._exchange({"entry": self.entry, "main_module": self.main_module, "preload": self.preload})
        if reply != {"ready": True}:
            return self._turn_off((reply or {}).get("refused", "the warm server died (its imports failed?)"))
        return None

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        stdout: Stream,
        stderr: Stream | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> ForkedCommand | subprocess.Popen:
        """Start one command, its output appended to `stdout` (and to `stderr`, else to the same stream); the handle
        has Popen's pid, poll, wait, send_signal, kill and returncode."""
        with self._lock:
            if self.busy:
                raise RuntimeError("a warm server runs one command at a time: wait for the running one first")
            cwd = Path.cwd() if cwd is None else Path(cwd)
            stderr = stdout if stderr is None else stderr
            self.start_server()
            if self._sock is None and self.off_reason is None:
                self._connect()
            pid = self._forked(argv, env, stdout, stderr, cwd, new_session) if self._sock is not None else None
            if pid is not None:
                self._running = ForkedCommand(self, pid, argv)
                return self._running
            with _opened(stdout) as out, _opened(stderr) as err:
                self._running = subprocess.Popen([sys.executable, "-m", self.main_module, *argv], env=env, cwd=cwd,
                                                 stdout=out, stderr=err, start_new_session=new_session,
                                                 preexec_fn=die_with_parent)  # fmt: skip
            return self._running

    def run(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
        """Run one command to its end, its output appended to `log`: its exit code, negative when killed."""
        return self.start(argv, env, log, cwd=cwd).wait()

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._owned is not None:
                self._owned.stdin.close()
                self._owned.wait()
                self._owned = None

    def _forked(self, argv, env, stdout: Stream, stderr: Stream, cwd: Path, new_session: bool) -> int | None:
        """Ask the server to fork the command (its streams go along as descriptors): its pid, or None when the
        server is off from now on."""
        request = {"argv": argv, "env": env, "cwd": str(cwd), "new_session": new_session}
        with _opened_fd(stdout) as out, _opened_fd(stderr) as err:
            reply = self._exchange(request, [out, err])
        if reply is None or "refused" in reply:
            return self._turn_off("the warm server died" if reply is None else reply["refused"])
        return reply["pid"]

    def _exchange(self, message: dict, fds: list[int] = ()) -> dict | None:
        try:
            socket.send_fds(self._sock, [(json.dumps(message) + "\n").encode()], list(fds))
        except OSError:
            return None
        return self._read(None)

    def _code(self, timeout: float | None) -> tuple[int | None, float | None]:
        """The running child's exit code and CPU seconds once the server reports them, (None, None) while it runs
        past `timeout`."""
        with self._lock:
            if self._sock is None:
                return -signal.SIGKILL, None  # the server died under its child, which died with it
            reply = self._read(timeout)
            if reply == {}:
                return None, None
            if reply is None:
                self._turn_off("the warm server died")
                return -signal.SIGKILL, None
            return reply["code"], reply.get("cpu")

    def _read(self, timeout: float | None) -> dict | None:
        """The server's next message: {} when none came within `timeout`, None when the server is gone."""
        while b"\n" not in self._buffer:
            if not select.select([self._sock], [], [], timeout)[0]:
                return {}
            try:
                data = self._sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _turn_off(self, reason: str) -> None:
        """From now on, commands start new interpreters; say so once, with the reason."""
        print(f"contrastlab: {reason}: commands start new interpreters from now on", file=sys.stderr, flush=True)
        self.off_reason = reason
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._owned is not None:
            self._owned.kill()
            self._owned.wait()
            self._owned = None


@contextlib.contextmanager
def _opened(stream: Stream):
    """The stream as `Popen` takes it."""
    if isinstance(stream, int):
        yield stream
        return
    with open(stream, "a") as file:
        yield file


@contextlib.contextmanager
def _opened_fd(stream: Stream):
    """The stream as a descriptor to send."""
    with _opened(stream) as opened:
        yield opened if isinstance(opened, int) else opened.fileno()
