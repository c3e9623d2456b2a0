"""The warm server: imports torch, Lightning, MLflow and contrastlab once, then forks a child per command, so that
each of a sweep's trials, and each DDP rank after the first, skips the seconds a new interpreter spends on imports.

A child is a process of its own: a crash, a NaN, a leak or a kill ends only it, and its memory goes back when it
exits. The server imports what each client tells it to, then what each child had to import for itself (read from a
file the child leaves), so that from the second command on a child finds its modules loaded.

The server stays bare so that forking is safe: it opens no store, runs no tensor op and starts no thread. Before
each fork it checks that nothing has initialised CUDA (a forked child cannot use it then) and that it still runs one
thread; when either check fails, it refuses and the client runs the command in a new interpreter instead.

Clients connect to its Unix socket, whose path every child finds in CONTRASTLAB_WARM_SERVER: a sweep's workers, a
trial's DDP ranks and a test's concurrent commands share the one server, each running its commands one at a time.
The server reads no requests on stdin: stdin is its lifeline, and when it closes (its owner closed it, or died) the
server kills what it forked and ends. A client that dies takes its running command along.

Protocol (JSON lines on the socket): the client says {"entry", "main_module", "preload"} and the server answers
{"ready": true} once it has imported them. Then, per command, the client writes {"argv", "env", "cwd",
"new_session"} with two descriptors, the command's stdout and stderr (SCM_RIGHTS); the server answers {"pid"} when
the child has started and {"code", "cpu"} when it has ended (negative: killed by that signal; its CPU seconds), or
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
import socket
import struct
import sys
import tempfile
import threading
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from contrastlab.platform.parents import die_with_parent

SOCKET_ENV = "CONTRASTLAB_WARM_SERVER"


def fork_unsafe_reason() -> str | None:
    """Why forking this process now would give a broken child, or None when it is safe."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in the warm server, and a forked child cannot use it"
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return f"the warm server runs other threads ({names}), whose locks a forked child would inherit held"
    return None


@dataclass(eq=False)
class _Client:
    """One connection: its commands run one at a time."""

    sock: socket.socket
    peer: int | None  # a pidfd of the client's process: readable once it has ended
    run: object = None  # the entry point, once the client has said hello
    main_module: str = ""
    buffer: bytes = b""
    fds: list[int] = field(default_factory=list)  # received with a request, not yet used
    child: int | None = None
    child_fd: int | None = None  # a pidfd of the running child
    learned: Path | None = None


class _Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(folder / "server.sock"))
        self.listener.listen(64)
        self.clients: list[_Client] = []
        self.forked = 0

    @property
    def path(self) -> str:
        return self.listener.getsockname()

    def loop(self, lifeline: int) -> None:
        """Serve until the lifeline closes."""
        while True:
            handlers = self._handlers()
            for fd in select.select([lifeline, *handlers], [], [])[0]:
                if fd == lifeline:
                    if not os.read(lifeline, 4096):
                        return
                    continue
                handlers[fd]()

    def _handlers(self) -> dict:
        handlers = {self.listener.fileno(): self._accept}
        for client in self.clients:
            handlers[client.sock.fileno()] = lambda c=client: self._receive(c)
            if client.child_fd is not None:
                handlers[client.child_fd] = lambda c=client: self._ended(c)
            if client.peer is not None:
                handlers[client.peer] = lambda c=client: self._drop(c)
        return handlers

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        try:
            peer = os.pidfd_open(pid)
        except OSError:  # it has ended already
            sock.close()
            return
        self.clients.append(_Client(sock, peer))

    def _receive(self, client: _Client) -> None:
        if client not in self.clients:  # dropped by an earlier handler of this round
            return
        try:
            data, fds, _, _ = socket.recv_fds(client.sock, 65536, 8)
        except OSError:
            data, fds = b"", []
        client.fds += fds
        if not data:
            self._drop(client)
            return
        client.buffer += data
        while b"\n" in client.buffer and client in self.clients:
            line, client.buffer = client.buffer.split(b"\n", 1)
            self._request(client, json.loads(line))

    def _request(self, client: _Client, request: dict) -> None:
        if client.run is None:
            self._hello(client, request)
            return
        refused = fork_unsafe_reason() or ("a command is running: wait for it first" if client.child else None)
        if refused:
            self._reply(client, {"refused": refused})
            return
        streams, client.fds = client.fds[:2], client.fds[2:]
        self.forked += 1
        client.learned = self.folder / f"modules-{self.forked}.json"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child never returns into this loop, whatever goes wrong in it
            code = 1
            try:
                code = _child(client, request, streams, self._fds(), self.path)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in streams:
            os.close(fd)
        client.child, client.child_fd = pid, os.pidfd_open(pid)
        self._reply(client, {"pid": pid})

    def _hello(self, client: _Client, hello: dict) -> None:
        try:
            for name in hello["preload"]:
                importlib.import_module(name)
            module, function = hello["entry"].split(":")
            client.run = getattr(importlib.import_module(module), function)
        except Exception as exc:
            self._reply(client, {"refused": f"the warm server could not import {hello['entry']}: {exc!r}"})
            self._drop(client)
            return
        client.main_module = hello["main_module"]
        self._reply(client, {"ready": True})

    def _ended(self, client: _Client) -> None:
        if client not in self.clients:
            return
        _, status, usage = os.wait4(client.child, 0)
        os.close(client.child_fd)
        client.child = client.child_fd = None
        cpu = usage.ru_utime + usage.ru_stime  # with the processes it waited for (its loader workers, say)
        self._reply(client, {"code": os.waitstatus_to_exitcode(status), "cpu": cpu})
        _import_learned(client.learned)

    def _drop(self, client: _Client) -> None:
        """The client is gone: so is its running command."""
        if client not in self.clients:
            return
        self.clients.remove(client)
        if client.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(client.child, signal.SIGKILL)
            os.waitpid(client.child, 0)
            os.close(client.child_fd)
        for fd in [client.peer, *client.fds]:
            if fd is not None:
                os.close(fd)
        client.sock.close()

    def _reply(self, client: _Client, message: dict) -> None:
        try:
            client.sock.sendall((json.dumps(message) + "\n").encode())
        except OSError:
            self._drop(client)

    def _fds(self) -> list[int]:
        """The server's descriptors, which a child must not keep."""
        fds = [self.listener.fileno()]
        for client in self.clients:
            fds += [client.sock.fileno(), *(fd for fd in (client.peer, client.child_fd) if fd is not None)]
            fds += client.fds
        return fds

    def close(self) -> None:
        for client in list(self.clients):
            self._drop(client)
        self.listener.close()


def serve(preload: list[str]) -> None:
    """Say where the socket is on stdout, import `preload`, then serve until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the children's to act on; the server ends with its owner
    die_with_parent()
    folder = Path(tempfile.mkdtemp(prefix="contrastlab-warm-"))  # not TemporaryDirectory: its finalizer is inherited
    server = _Server(folder)
    try:
        # Clients may connect while it imports: they wait in the socket's backlog.
        with os.fdopen(os.dup(sys.stdout.fileno()), "w") as announce:
            announce.write(json.dumps({"socket": server.path}) + "\n")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print from an import goes to stderr
        for name in preload:
            importlib.import_module(name)
        server.loop(sys.stdin.fileno())
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


def _import_learned(learned: Path | None) -> None:
    """Import what the last child imported for itself; a module that fails here is left to the children."""
    if learned is None or not learned.exists():
        return
    for name in json.loads(learned.read_text()):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: S112 - an optional import that failed in the child too, or a private alias
                continue
    learned.unlink()


def _child(client: _Client, request: dict, streams: list[int], server_fds: list[int], path: str) -> int:
    """Become `python -m main_module *argv` in the request's folder and environment; return its exit code."""
    loaded = set(sys.modules)
    _forget_exit_handlers()
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)  # the lifeline is the server's
    os.close(nothing)
    for fd, stream in zip((1, 2), streams, strict=True):
        os.dup2(stream, fd)
    for fd in {*server_fds, *streams} - {0, 1, 2}:
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent()
    if request.get("new_session"):
        os.setsid()  # a process group of its own, as Popen's start_new_session: a killpg reaches its DDP ranks
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[SOCKET_ENV] = path  # where its own commands (its DDP ranks, a sweep's trials) are forked
    # OpenMP read OMP_NUM_THREADS when the server loaded it; this child's share of the cores is in its environment.
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    # Lightning's DDP launcher starts the other ranks as `python -m <__main__'s module> *sys.argv[1:]`.
    spec = importlib.util.find_spec(client.main_module)
    if spec.submodule_search_locations is not None:  # a package runs as its __main__ module
        spec = importlib.util.find_spec(f"{client.main_module}.__main__")
    sys.modules["__main__"].__spec__ = spec
    sys.argv = [client.main_module, *request["argv"]]
    code = 0
    try:
        client.run(request["argv"])
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
        client.learned.write_text(json.dumps(sorted(n for n in set(sys.modules) - loaded if not n.startswith("__"))))
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


if __name__ == "__main__":
    serve(sys.argv[1:])
