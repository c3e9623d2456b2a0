"""`finetune`: a copy of the encoder and a linear head trained end to end on seeded labelled subsets of
train (one group of metrics per fraction: `finetune_1pct`, `finetune_10pct`, ...), reported on test."""

from __future__ import annotations

from contrastlab.errors import ConfigError
from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.finetune import finetune, subset_loader
from contrastlab.evaluation.registry import Context, Needs, Protocol, number_list, register, timed


def fraction_name(fraction: float) -> str:
    return f"finetune_{fraction * 100:g}pct"


@register
class Finetune(Protocol):
    name = "finetune"
    needs = Needs()
    headline = "top1"
    order = 50

    def run_groups(self, ctx: Context) -> dict[str, dict[str, float]]:
        options, train = ctx.options, ctx.feats["train"]
        multilabel = P.is_multilabel(train["y"])
        train_loader, test_loader = ctx.loader("train"), ctx.loader("test")
        results = {}
        for fraction in options.finetune_fractions:
            # Subsets are drawn from the cached labels; `idx` maps them back to the dataset's samples.
            indices = train["idx"][P.stratified_subset(train["y"], fraction, options.seed)]
            with timed(fraction_name(fraction)):
                metrics = finetune(
                    ctx.model,
                    subset_loader(train_loader, indices, options.finetune_batch_size, options.seed),
                    test_loader,
                    feature_dim=train["features"].shape[1],
                    num_outputs=train["y"].shape[1] if multilabel else ctx.num_classes,
                    multilabel=multilabel,
                    epochs=options.finetune_epochs,
                    lr=options.finetune_lr,
                    device=ctx.device,
                    seed=options.seed,
                )
            results[fraction_name(fraction)] = {**metrics, "labels": float(len(indices))}
        return results

    def add_options(self, parser) -> None:
        parser.add_argument(
            "--finetune-fractions",
            type=number_list(float, "--finetune-fractions"),
            default=[0.01, 0.1, 1.0],
            help="fractions of the train labels to fine-tune on (default 0.01,0.1,1.0)",
        )
        parser.add_argument("--finetune-epochs", type=int, default=10, help="epochs of each fine-tuning (default 10)")
        parser.add_argument("--finetune-lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
        parser.add_argument("--finetune-batch-size", type=int, default=64, help="fine-tuning batch (default 64)")

    def check_options(self, options) -> None:
        for fraction in options.finetune_fractions:
            if not 0 < fraction <= 1:
                raise ConfigError(f"--finetune-fractions: {fraction} is not in (0, 1]; e.g. 0.01,0.1,1.0")
        if options.finetune_epochs < 1 or options.finetune_batch_size < 1:
            raise ConfigError("--finetune-epochs and --finetune-batch-size must be >= 1")
