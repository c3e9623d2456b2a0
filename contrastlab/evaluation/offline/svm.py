"""`svm`: an RBF-SVM with C chosen by cross-validation on train (TS2Vec's time-series protocol)."""

from __future__ import annotations

from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.registry import Context, Needs, Protocol, register, timed


@register
class SVM(Protocol):
    name = "svm"
    needs = Needs(single_label="an SVM classifies one class per sample")
    headline = "acc"
    order = 40

    def run(self, ctx: Context) -> dict[str, float]:
        train, test = ctx.feats["train"], ctx.feats["test"]
        with timed("svm"):
            return P.svm_rbf(
                train["features"],
                train["y"],
                test["features"],
                test["y"],
                max_train_samples=ctx.options.svm_max_train,
                seed=ctx.options.seed,
            )

    def add_options(self, parser) -> None:
        parser.add_argument(
            "--svm-max-train", type=int, default=10000, help="SVM training samples at most (default 10000)"
        )
