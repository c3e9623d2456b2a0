"""Warm processes: a server imports torch, Lightning, MLflow and contrastlab once, then forks a child per command,
so that each of a sweep's trials skips the seconds a new interpreter spends on imports.

A child is a process of its own: a crash, a NaN, a leak or a kill ends only it, and its memory goes back when it
exits. The server imports what it is told to at start, then what each child had to import for itself (read from
a file the child leaves), so that from the second command on a child finds its modules loaded.

The server stays bare so that forking is safe: it opens no store, runs no tensor op and starts no thread.
Before each fork it checks that nothing has initialised CUDA (a forked child cannot use it then) and that it
still runs one thread; when either check fails, the command runs in a new interpreter instead.

Protocol (JSON lines): the client writes {"argv", "env", "cwd", "stdout", "stderr", "new_session"}; the server
answers {"pid"} when the child has started, then {"code"} when it has ended (negative: killed by that signal), or
{"refused": reason}.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import weakref
from pathlib import Path

from contrastlab.platform.parents import die_with_parent


def fork_unsafe_reason() -> str | None:
    """Why forking this process now would give a broken child, or None when it is safe."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in the warm server, and a forked child cannot use it"
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return f"the warm server runs other threads ({names}), whose locks a forked child would inherit held"
    return None


def serve(entry: str, main_module: str, preload: list[str]) -> None:
    """The server's loop: read requests on stdin until it closes, fork a child for each."""
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print from an import must not reach the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the child's to act on; the server ends with its client
    die_with_parent()
    for name in preload:
        importlib.import_module(name)
    module, function = entry.split(":")
    run = getattr(importlib.import_module(module), function)
    _reply(replies, {"ready": True})
    folder = tempfile.mkdtemp(prefix="contrastlab-warm-")  # not TemporaryDirectory: its finalizer is inherited
    try:
        for line in requests:
            request = json.loads(line)
            refused = fork_unsafe_reason()
            if refused:
                _reply(replies, {"refused": refused})
                continue
            learned = Path(folder) / "modules.json"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child never returns into this loop, whatever goes wrong in it
                code = 1
                try:
                    code = _child(run, main_module, request, replies.fileno(), learned)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            _reply(replies, {"pid": pid})
            _, status = os.waitpid(pid, 0)
            _reply(replies, {"code": os.waitstatus_to_exitcode(status)})
            _import_learned(learned)  # while the client takes the next command
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _import_learned(learned: Path) -> None:
    """Import what the last child imported for itself; a module that fails here is left to the children."""
    if not learned.exists():
        return
    for name in json.loads(learned.read_text()):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: S112 - an optional import that failed in the child too, or a private alias
                continue
    learned.unlink()


def _reply(replies, message: dict) -> None:
    replies.write((json.dumps(message) + "\n").encode())


def _child(run, main_module: str, request: dict, replies: int, learned: Path) -> int:
    """Become `python -m main_module *argv` in the request's folder and environment; return its exit code."""
    loaded = set(sys.modules)
    _forget_exit_handlers()
    os.close(replies)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)  # the requests are the server's to read
    os.close(nothing)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent()
    if request.get("new_session"):
        os.setsid()  # a process group of its own, as Popen's start_new_session: a killpg reaches its DDP ranks
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # OpenMP read OMP_NUM_THREADS when the server loaded it; this child's share of the cores is in its environment.
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    # Lightning's DDP launcher starts the other ranks as `python -m <__main__'s module> *sys.argv[1:]`.
    spec = importlib.util.find_spec(main_module)
    if spec.submodule_search_locations is not None:  # a package runs as its __main__ module
        spec = importlib.util.find_spec(f"{main_module}.__main__")
    sys.modules["__main__"].__spec__ = spec
    sys.argv = [main_module, *request["argv"]]
    code = 0
    try:
        run(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # what an interpreter runs when it exits: MLflow's and the run's own clean-ups
    logging.shutdown()
    try:
        learned.write_text(json.dumps(sorted(name for name in set(sys.modules) - loaded if not name.startswith("__"))))
    except OSError:
        pass  # the server is gone, or its folder: nothing to learn for
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _forget_exit_handlers() -> None:
    """Leave the server's exit handlers and finalizers to the server: the child runs only those it registers."""
    atexit._clear()
    for finalizer in list(getattr(weakref.finalize, "_registry", {})):
        finalizer.atexit = False
    weakref.finalize._registered_with_atexit = False  # so the child's own finalizers register again


class ForkedCommand:
    """A command running as a child of a warm server, waited on as a `subprocess.Popen` is."""

    def __init__(self, processes: WarmProcesses, pid: int, args: list[str]) -> None:
        self._processes, self.pid, self.args = processes, pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._processes._code(timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._processes._code(timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


class WarmProcesses:
    """A client of one warm server: starts commands one at a time, each in a child forked from the server.

    Where the server cannot start, dies or refuses to fork, the command runs as `python -m main_module *argv`, the
    way it would without a server, and so do the commands after it; `fresh=True` always runs them that way.
    """

    def __init__(
        self, preload: list[str], entry: str, main_module: str, fresh: bool = False, cwd: Path | None = None
    ) -> None:
        self.preload, self.entry, self.main_module, self.cwd = preload, entry, main_module, cwd
        self.off_reason: str | None = "fresh processes asked for" if fresh else None
        self._server: subprocess.Popen | None = None
        self._ready = False
        self._running: ForkedCommand | subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The running command's process id."""
        running = self._running
        return running.pid if running is not None and running.returncode is None else None

    @property
    def server_pid(self) -> int | None:
        return None if self._server is None else self._server.pid

    def start_server(self) -> None:
        """Start the server now (it imports for several seconds) rather than at the first command.

        The server dies with the thread that starts it (Linux's parent-death signal follows the thread), so start
        it from the thread that lives as long as this client's use: the main thread of a worker.
        """
        if self.off_reason is None and self._server is None:
            command = [sys.executable, "-m", __name__, self.entry, self.main_module, *self.preload]
            self._server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                            cwd=self.cwd, preexec_fn=die_with_parent)  # fmt: skip

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        stdout: Path,
        stderr: Path | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> ForkedCommand | subprocess.Popen:
        """Start one command, its output appended to `stdout` (and to `stderr`, else to the same file); the handle
        has Popen's pid, poll, wait, kill and returncode."""
        if self._running is not None and self._running.poll() is None:
            raise RuntimeError("a warm server runs one command at a time: wait for the running one first")
        cwd = Path.cwd() if cwd is None else Path(cwd)
        stderr = stdout if stderr is None else stderr
        self.start_server()
        request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr),
                   "new_session": new_session}  # fmt: skip
        pid = self._forked(request) if self._server is not None else None
        if pid is not None:
            self._running = ForkedCommand(self, pid, argv)
            return self._running
        with open(stdout, "a") as out, open(stderr, "a") as err:
            self._running = subprocess.Popen([sys.executable, "-m", self.main_module, *argv], env=env, cwd=cwd,
                                             stdout=out, stderr=err, start_new_session=new_session,
                                             preexec_fn=die_with_parent)  # fmt: skip
        return self._running

    def run(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> int:
        """Run one command to its end, its output appended to `log`: its exit code, negative when killed."""
        return self.start(argv, env, log, cwd=cwd).wait()

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()
            self._server.wait()
            self._server = None

    def _forked(self, request: dict) -> int | None:
        """Ask the server to fork the command: its pid, or None when the server is off from now on."""
        if not self._ready:
            self._ready = self._read() == {"ready": True}
            if not self._ready:
                return self._turn_off("the warm server did not start (its imports failed)")
        try:
            self._server.stdin.write((json.dumps(request) + "\n").encode())
        except BrokenPipeError:
            return self._turn_off("the warm server died")
        reply = self._read()
        if reply is None or "refused" in reply:
            return self._turn_off("the warm server died" if reply is None else reply["refused"])
        return reply["pid"]

    def _code(self, timeout: float | None) -> int | None:
        """The running child's exit code once the server reports it, None while it runs past `timeout`."""
        if self._server is None:
            return -signal.SIGKILL  # the server died under its child, which died with it
        if timeout is not None and not select.select([self._server.stdout], [], [], timeout)[0]:
            return None
        reply = self._read()
        if reply is None:
            self._turn_off("the warm server died")
            return -signal.SIGKILL
        return reply["code"]

    def _read(self) -> dict | None:
        line = self._server.stdout.readline()
        return json.loads(line) if line else None

    def _turn_off(self, reason: str) -> None:
        """From now on, commands start new interpreters; say so once, with the reason."""
        print(f"contrastlab: {reason}: commands start new interpreters from now on", file=sys.stderr, flush=True)
        self.off_reason = reason
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            self._server = None


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3:])
