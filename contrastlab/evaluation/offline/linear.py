"""`linear`: logistic regression on frozen features, its L2 penalty chosen on val, reported on test."""

from __future__ import annotations

from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.registry import Context, Needs, Protocol, register, timed

SPLITS = ("train", "val", "test")


def probe(ctx: Context) -> P.LinearResult:
    """The linear probe of this evaluation, fitted once (the `auroc` protocol reads its test scores)."""

    def fit() -> P.LinearResult:
        with timed("linear probe"):
            tensors = [t.to(ctx.device) for s in SPLITS for t in (ctx.feats[s]["features"], ctx.feats[s]["y"])]
            return P.linear_probe(*tensors, ctx.num_classes)

    return ctx.shared("linear_probe", fit)


@register
class Linear(Protocol):
    name = "linear"
    needs = Needs(splits=SPLITS, classes={"train": 2, "test": 1, "val": 1})
    headline = "top1"
    order = 20

    def run(self, ctx: Context) -> dict[str, float]:
        return probe(ctx).metrics
