"""Starting a backbone from another run: the backbone weights of a contrastlab checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from contrastlab.errors import CheckpointError

PREFIX = "backbone."


def load_backbone(backbone: nn.Module, path: str | Path, key: str = "model.init_args.init_from") -> None:
    """Copy the backbone weights of the contrastlab checkpoint at `path` into `backbone`, all or nothing.

    The checkpoint's other parts (projector, probe, optimiser) are ignored: only the encoder transfers.
    Raises CheckpointError naming `key` when the file is missing, unreadable, not a contrastlab
    checkpoint, or trained with a backbone of another shape.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{key}: {path} not found; point it at a .ckpt written by `contrastlab fit`")
    try:
        # Our checkpoints load with weights_only (DataInfo and OptimizerConfig are registered safe globals).
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{key}: {path} is not a readable checkpoint ({type(err).__name__})") from err
    state = ckpt.get("state_dict", {}) if isinstance(ckpt, dict) else {}
    weights = {name[len(PREFIX) :]: value for name, value in state.items() if name.startswith(PREFIX)}
    if not weights:
        raise CheckpointError(f"{key}: {path} holds no backbone weights; it was not written by `contrastlab fit`")
    trained_with = ckpt.get("hyper_parameters", {}).get("backbone", "another backbone")
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise CheckpointError(
            f"{key}: {path} was trained with backbone {trained_with!r} of another shape or input channels "
            f"({detail[:200]}); set model.init_args.backbone and backbone_kwargs to the ones it was trained with"
        ) from err
