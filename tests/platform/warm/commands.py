"""Small commands for the warm-process tests, run as `python -m tests.platform.warm.commands VERB ...` or forked
from a warm server with `main` as its entry."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time


def main(argv: list[str]) -> None:
    verb, *rest = argv
    if verb == "report":  # where and how this process runs, as JSON on stdout
        import __main__

        print(json.dumps({
            "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv,
            "main_spec": getattr(getattr(__main__, "__spec__", None), "name", None),
            "env": {key: os.environ.get(key) for key in rest},
            "loaded": [name for name in ("xml.dom.minidom", "csv") if name in sys.modules],
        }), flush=True)  # fmt: skip
    elif verb == "import":
        importlib.import_module(rest[0])
    elif verb == "exit":
        raise SystemExit(int(rest[0]))
    elif verb == "raise":
        raise RuntimeError("a bug in the command")
    elif verb == "signal":
        os.kill(os.getpid(), getattr(signal, rest[0]))
    elif verb == "allocate":  # megabytes held until the command ends
        held = bytearray(int(rest[0]) * 2**20)
        held[::4096] = b"x" * len(held[::4096])
    elif verb == "sleep":
        print("sleeping", flush=True)
        time.sleep(float(rest[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
