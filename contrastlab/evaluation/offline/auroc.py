"""`auroc`: AUROC and average precision of the linear probe's test scores, its penalty chosen by AUROC on val
(see `protocols.probe_auroc`)."""

from __future__ import annotations

from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.offline.linear import SPLITS, probe
from contrastlab.evaluation.registry import Context, Needs, Protocol, register


@register
class AUROC(Protocol):
    name = "auroc"
    needs = Needs(splits=SPLITS, classes={"train": 2, "test": 2, "val": 1})
    headline = "auroc"
    order = 30  # after linear, whose probe it reads

    def run(self, ctx: Context) -> dict[str, float]:
        return P.probe_auroc(probe(ctx), ctx.feats["test"]["y"], ctx.num_classes)
