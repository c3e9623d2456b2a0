"""`knn`: the weighted kNN vote (cosine similarity, weights exp(s/T)) of test against train, for each k; with
`--knn-standardize`, on features z-scored with train's statistics."""

from __future__ import annotations

from contrastlab.errors import ConfigError
from contrastlab.evaluation import protocols as P
from contrastlab.evaluation.registry import Context, Needs, Protocol, number_list, register, timed


@register
class KNN(Protocol):
    name = "knn"
    needs = Needs(single_label="kNN top-1 needs one class per sample")
    order = 10

    def run(self, ctx: Context) -> dict[str, float]:
        train, test = ctx.feats["train"], ctx.feats["test"]
        with timed("knn"):
            return P.knn_grid(
                train["features"],
                train["y"],
                test["features"],
                test["y"],
                ctx.num_classes,
                tuple(ctx.options.k),
                ctx.options.knn_temperature,
                ctx.options.knn_standardize,
            )

    def headline_of(self, metrics):
        """The smallest k's top-1."""
        if not metrics:
            return None
        name = min(metrics, key=lambda m: int(m.removeprefix("top1_k")))
        return name, metrics[name]

    def add_options(self, parser) -> None:
        parser.add_argument(
            "--k", type=number_list(int, "--k"), default=list(P.KNN_KS), help="kNN's k grid (default 1,5,20,200)"
        )
        parser.add_argument(
            "--knn-temperature", type=float, default=0.07, help="kNN vote weights exp(s/T) (default 0.07)"
        )
        parser.add_argument(
            "--knn-standardize",
            action="store_true",
            help="z-score each feature with train's mean and sd before the cosine vote (TS2Vec's 1-NN protocol)",
        )

    def check_options(self, options) -> None:
        if min(options.k) < 1:
            raise ConfigError(f"--k: {min(options.k)} is below 1; e.g. --k 1,5,20,200")
