"""DDP ranks forked from the warm server: under a warm server (a sweep's trial, a test's command), Lightning's
launcher would start each rank after the first as a new interpreter, which spends seconds of CPU on imports the
server has done. Here they are forked from that server instead, with the environment and arguments Lightning gives
them; the ranks then meet in the process group as any others do.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys

from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from contrastlab.platform.warm import SOCKET_ENV, WarmProcesses

RANKS_EXIT_SECONDS = 60  # how long rank 0 waits at exit for the other ranks to finish their own exit


def fork_ranks_from_warm_server(trainer, entry: str, main_module: str) -> None:
    """Make the trainer's DDP launcher fork its other ranks from the warm server, when one serves this process and
    the process is `python -m main_module` (a script that calls `entry` itself needs its own ranks)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    runs_main = spec is not None and spec.name in (main_module, f"{main_module}.__main__")
    if os.environ.get(SOCKET_ENV) and runs_main and type(launcher) is _SubprocessScriptLauncher:
        launcher._call_children_scripts = lambda: _start_other_ranks(launcher, entry, main_module)


def _start_other_ranks(launcher: _SubprocessScriptLauncher, entry: str, main_module: str) -> None:
    """Lightning's `_call_children_scripts`, each rank a warm child: the same variables and arguments."""
    launcher._check_can_spawn_children()
    cluster = launcher.cluster_environment
    os.environ["MASTER_ADDR"] = cluster.main_address
    os.environ["MASTER_PORT"] = str(cluster.main_port)
    os.environ["NODE_RANK"] = str(cluster.node_rank())
    os.environ["LOCAL_RANK"] = str(cluster.local_rank())
    os.environ["WORLD_SIZE"] = str(launcher.num_processes * launcher.num_nodes)
    launcher.procs = []
    for local_rank in range(1, launcher.num_processes):
        processes = WarmProcesses([], entry=entry, main_module=main_module)
        env = {**os.environ, "LOCAL_RANK": str(local_rank)}
        launcher.procs.append(processes.start(sys.argv[1:], env, sys.stdout.fileno(), sys.stderr.fileno()))
    # The server takes a client's running command along when the client ends: let the ranks end by themselves.
    atexit.register(_wait_for, launcher.procs)


def _wait_for(procs: list) -> None:
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=RANKS_EXIT_SECONDS)
