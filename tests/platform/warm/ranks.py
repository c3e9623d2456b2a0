"""A callback given on the command line of a DDP fit: each rank writes where it runs to ranks/<rank>.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L


class RankOrigin(L.Callback):
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        folder = Path("ranks")
        folder.mkdir(exist_ok=True)
        origin = {"pid": os.getpid(), "ppid": os.getppid()}
        (folder / f"{trainer.global_rank}.json").write_text(json.dumps(origin))
