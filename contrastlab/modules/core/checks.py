"""Checks of a method's hyper-parameters, raised as ConfigError naming the key before anything trains."""

from __future__ import annotations

from contrastlab.errors import ConfigError


def positive(key: str, value: float | None, fix: str = "") -> None:
    """`model.init_args.<key>` must be > 0 (None passes: the option is off)."""
    if value is not None and not value > 0:
        raise ConfigError(f"model.init_args.{key} must be > 0, got {value}{'; ' + fix if fix else ''}")


def non_negative(key: str, value: float, fix: str = "") -> None:
    if not value >= 0:
        raise ConfigError(f"model.init_args.{key} must be >= 0, got {value}{'; ' + fix if fix else ''}")


def margin(value: float) -> None:
    """An additive margin on positive cosines: cosines lie in [-1, 1], so a margin of 1 or more swamps the loss."""
    if not 0 <= value < 1:
        raise ConfigError(f"model.init_args.margin must be in [0, 1), got {value}; 0 turns it off, 0.1-0.3 is usual")


def fraction(key: str, value: float) -> None:
    """`model.init_args.<key>` must be a weight in [0, 1]."""
    if not 0 <= value <= 1:
        raise ConfigError(f"model.init_args.{key} must be in [0, 1], got {value}")


def sequence_backbone(module) -> None:
    """A method that contrasts timesteps needs a backbone with `sequence(x, mask)` (per-step features)."""
    if not hasattr(module.backbone, "sequence"):
        raise ConfigError(
            f"model.backbone: {type(module).__name__} needs per-step features; {module.hparams.backbone!r} has no "
            "`sequence(x, mask)`: use ts2vec or tstcc_cnn"
        )
