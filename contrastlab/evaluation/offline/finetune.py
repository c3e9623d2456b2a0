"""`finetune`: a copy of the encoder and a linear head trained end to end on seeded labelled subsets of
train (one group of metrics per fraction: `finetune_1pct`, `finetune_10pct`, ...), reported on test."""

from __future__ import annotations

from contrastlab.errors import ConfigError
from contrastlab.evaluation.features import split_loader
from contrastlab.evaluation.finetune import FINETUNE_DEFAULTS, SCHEDULES, finetune_fractions
from contrastlab.evaluation.registry import Context, Needs, Protocol, number_list, register


@register
class Finetune(Protocol):
    name = "finetune"
    needs = Needs()
    headline = "top1"
    order = 50

    def run_groups(self, ctx: Context) -> dict[str, dict[str, float]]:
        # Subsets are drawn from the cached labels; `idx` maps them back to the dataset's samples.
        train = ctx.feats["train"]
        return finetune_fractions(
            ctx.model,
            train["y"],
            train["idx"],
            ctx.loader("train"),
            ctx.loader("test"),
            train["features"].shape[1],
            ctx.num_classes,
            ctx.options,
            ctx.device,
            split_loader(ctx.loader, "val"),
        )

    def add_options(self, parser) -> None:
        defaults = FINETUNE_DEFAULTS
        fractions = ",".join(f"{f:g}" for f in defaults["fractions"])
        parser.add_argument(
            "--finetune-fractions",
            type=number_list(float, "--finetune-fractions"),
            default=list(defaults["fractions"]),
            help=f"fractions of the train labels to fine-tune on, and to train the supervised baseline on "
            f"(default {fractions})",
        )
        parser.add_argument(
            "--finetune-epochs",
            type=int,
            default=defaults["epochs"],
            help=f"epochs of each fine-tuning (default {defaults['epochs']})",
        )
        parser.add_argument(
            "--finetune-lr",
            type=float,
            default=defaults["lr"],
            help=f"AdamW learning rate (default {defaults['lr']:g})",
        )
        parser.add_argument(
            "--finetune-batch-size",
            type=int,
            default=defaults["batch_size"],
            help=f"fine-tuning batch (default {defaults['batch_size']})",
        )
        parser.add_argument(
            "--finetune-schedule",
            choices=SCHEDULES,
            default=defaults["schedule"],
            help=f"the learning rate over the fine-tuning: decayed to zero on a cosine, or held "
            f"(default {defaults['schedule']})",
        )

    def check_options(self, options) -> None:
        for fraction in options.finetune_fractions:
            if not 0 < fraction <= 1:
                raise ConfigError(f"--finetune-fractions: {fraction} is not in (0, 1]; e.g. 0.01,0.1,1.0")
        if options.finetune_epochs < 1 or options.finetune_batch_size < 1:
            raise ConfigError("--finetune-epochs and --finetune-batch-size must be >= 1")
