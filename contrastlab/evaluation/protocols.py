"""Offline evaluation protocols on frozen features: pure functions of tensors that return numbers.

- `knn_grid`: the weighted kNN vote of `knn.py` (Wu et al. 2018) over a grid of k.
- `linear_probe`: L2-regularised logistic regression fitted by L-BFGS on standardised features, the
  regularisation chosen on the validation split (the linear evaluation of SimCLR/CLIP).
- `svm_rbf`: an RBF-SVM whose C is chosen by cross-validation on train (TS2Vec's time-series protocol).
- `auroc_ap`: AUROC and average precision from a probe's scores: binary, multi-label, or macro
  one-vs-rest over the classes of a single-label set; `probe_auroc`: those of the probe best by val AUROC.
- `stratified_subset`: the seeded labelled subsets (1%, 10%, ...) that fine-tuning trains on.

Labels are `(N,)` class indices, -1 for an unlabelled sample, or `(N, L)` 0/1 rows for multi-label
data. A protocol the labels cannot support raises `UnsupportedProtocol` naming it and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.errors import ContrastlabError
from contrastlab.metrics.knn import knn_accuracy

KNN_KS = (1, 5, 20, 200)
# Penalties on the mean loss, from strong to weak: each fit starts from the previous one's solution.
LINEAR_L2_GRID = tuple(10.0**e for e in range(0, -7, -1))
# TS2Vec's grid, a hard margin (C = inf) included.
SVM_C_GRID = (*(10.0**e for e in range(-4, 5)), math.inf)
# TS2Vec fits a hard margin, without a search, below this many training samples or per class.
SVM_SEARCH_MIN_SAMPLES, SVM_SEARCH_MIN_PER_CLASS = 50, 5


class UnsupportedProtocol(ContrastlabError):
    """The data cannot support this protocol; the message names the protocol and the reason."""

    def __init__(self, protocol: str, reason: str):
        super().__init__(f"{protocol}: {reason}")
        self.protocol, self.reason = protocol, reason


def is_multilabel(y: Tensor) -> bool:
    return y.ndim == 2


def labelled(y: Tensor) -> Tensor:
    """Which samples carry a label: y >= 0, or every entry of a multi-label row >= 0."""
    return (y >= 0).all(dim=1) if is_multilabel(y) else y >= 0


def require_classes(protocol: str, y: Tensor, split: str, minimum: int = 2) -> None:
    """Refuse a split with no labels, or (single-label) with fewer than `minimum` classes."""
    known = y[labelled(y)]
    if len(known) == 0:
        raise UnsupportedProtocol(protocol, f"the {split} split has no labelled samples")
    if not is_multilabel(y) and len(known.unique()) < minimum:
        raise UnsupportedProtocol(
            protocol, f"the {split} split holds {len(known.unique())} class (one-class data); it needs {minimum}"
        )


def train_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Each feature's mean and sd over the train split (sd at least 1e-6), to standardise every split with."""
    return x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)


# -- kNN ----------------------------------------------------------------------------------------------


def knn_grid(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    ks: tuple[int, ...] = KNN_KS,
    temperature: float = 0.07,
    standardize: bool = False,
) -> dict[str, float]:
    """Weighted kNN top-1 for each k: `{"top1_k20": 0.97, ...}` (cosine similarity, weights exp(s/T)).

    `standardize`: each feature z-scored with the train split's mean and sd first, as TS2Vec's 1-NN protocol and
    the MFCC baseline do, so that a few large-scale dimensions (a pooled std beside a mean) do not decide the cosine.
    (MLflow metric names refuse `@` and `=`, hence `top1_k20` rather than `top1@k=20`.)"""
    if is_multilabel(train_y):
        raise UnsupportedProtocol("knn", "multi-label data: kNN top-1 needs one class per sample")
    require_classes("knn", train_y, "train")
    require_classes("knn", test_y, "test", minimum=1)
    if standardize:
        mean, std = train_statistics(train_x.float())
        train_x, test_x = (train_x.float() - mean) / std, (test_x.float() - mean) / std
    return {
        f"top1_k{k}": knn_accuracy(train_x, train_y, test_x, test_y, num_classes, k=k, temperature=temperature)
        for k in ks
    }


# -- linear probe ---------------------------------------------------------------------------------


@dataclass
class LogisticModel:
    """A fitted probe: `scores(x)` are class probabilities (softmax) or label probabilities (sigmoid)."""

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor
    multilabel: bool

    def logits(self, x: Tensor) -> Tensor:
        return ((x.float() - self.mean) / self.std) @ self.weight + self.bias

    def scores(self, x: Tensor) -> Tensor:
        logits = self.logits(x)
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)


def fit_logistic(
    x: Tensor,
    y: Tensor,
    num_outputs: int,
    l2: float,
    multilabel: bool = False,
    init: tuple[Tensor, Tensor] | None = None,
    max_iter: int = 500,
) -> tuple[Tensor, Tensor]:
    """(W, b) minimising mean cross-entropy (or binary cross-entropy per label) + l2/2 * ||W||^2 by
    L-BFGS. The bias is not penalised; scikit-learn's `LogisticRegression(C)` is the same fit with
    l2 = 1 / (C * N)."""
    weight = torch.zeros(x.shape[1], num_outputs, device=x.device) if init is None else init[0].clone()
    bias = torch.zeros(num_outputs, device=x.device) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    target = y.float() if multilabel else y
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = x @ weight + bias
        if multilabel:
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = F.cross_entropy(logits, target)
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


@dataclass
class LinearResult:
    metrics: dict[str, float]
    model: LogisticModel
    test_scores: Tensor
    val_scores_by_l2: dict[float, float] = field(default_factory=dict)
    # Each penalty's probe's (val, test) probabilities, and the labelled val split's labels: another
    # metric can choose the penalty on val without refitting (`best_by`).
    probabilities_by_l2: dict[float, tuple[Tensor, Tensor]] = field(default_factory=dict)
    val_y: Tensor | None = None

    def best_by(self, score: Callable[[Tensor, Tensor], float]) -> tuple[float, Tensor]:
        """The penalty whose probe is best by `score(val probabilities, val labels)` (ties: the stronger
        penalty) and that probe's test probabilities."""
        strongest_first = sorted(self.probabilities_by_l2, reverse=True)
        l2 = max(strongest_first, key=lambda l2: score(self.probabilities_by_l2[l2][0], self.val_y))
        return l2, self.probabilities_by_l2[l2][1]


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    l2_grid: tuple[float, ...] = LINEAR_L2_GRID,
    max_iter: int = 500,
) -> LinearResult:
    """Fit a probe on train for each penalty, keep the one best on val, report it on test.

    Single-label: `top1` (test), `val_top1`, `l2`. Multi-label: `map` (macro average precision) in their
    place. Features are standardised with the train split's mean and standard deviation.
    """
    multilabel = is_multilabel(train_y)
    for split, y in (("train", train_y), ("val", val_y), ("test", test_y)):
        require_classes("linear", y, split, minimum=2 if split == "train" else 1)
    keep = [labelled(y) for y in (train_y, val_y, test_y)]
    (tx, ty), (vx, vy), (sx, sy) = (
        (x[k].float(), y[k]) for x, y, k in zip((train_x, val_x, test_x), (train_y, val_y, test_y), keep)
    )
    mean, std = train_statistics(tx)
    num_outputs = train_y.shape[1] if multilabel else num_classes
    txs = (tx - mean) / std
    best: tuple[float, float, tuple[Tensor, Tensor]] | None = None
    solution = None
    by_l2: dict[float, float] = {}
    probabilities: dict[float, tuple[Tensor, Tensor]] = {}
    for l2 in sorted(l2_grid, reverse=True):
        solution = fit_logistic(txs, ty, num_outputs, l2, multilabel, init=solution, max_iter=max_iter)
        probe = LogisticModel(*solution, mean, std, multilabel)
        probabilities[l2] = probe.scores(vx), probe.scores(sx)
        score = _probe_score(probabilities[l2][0], vy, multilabel)
        by_l2[l2] = score
        if best is None or score > best[0]:  # ties keep the stronger penalty
            best = (score, l2, solution)
    assert best is not None, "the l2 grid is empty"
    val_score, l2, solution = best
    probe = LogisticModel(*solution, mean, std, multilabel)
    test_scores = probabilities[l2][1]
    name = "map" if multilabel else "top1"
    metrics = {name: _probe_score(test_scores, sy, multilabel), f"val_{name}": val_score, "l2": l2}
    return LinearResult(metrics, probe, test_scores, by_l2, probabilities, vy)


def _probe_score(scores: Tensor, y: Tensor, multilabel: bool) -> float:
    if multilabel:
        from torchmetrics.functional import average_precision

        return float(average_precision(scores, y.long(), task="multilabel", num_labels=y.shape[1], average="macro"))
    return (scores.argmax(dim=1) == y).float().mean().item()


# -- AUROC / AP -------------------------------------------------------------------------------------


def auroc_ap(scores: Tensor, y: Tensor, num_classes: int) -> dict[str, float]:
    """AUROC and average precision of `scores` (probabilities from a probe).

    Binary data (two classes): of the positive class. Multi-label: macro over labels. More than two
    classes, one per sample: macro one-vs-rest over the classes present in `y`.
    """
    from torchmetrics.functional import auroc, average_precision

    keep = labelled(y)
    scores, y = scores[keep].float(), y[keep].long()
    if is_multilabel(y):
        kw = {"task": "multilabel", "num_labels": y.shape[1], "average": "macro"}
        return {"auroc": float(auroc(scores, y, **kw)), "ap": float(average_precision(scores, y, **kw))}
    present = y.unique()
    if len(present) < 2:
        raise UnsupportedProtocol("auroc", f"the test split holds {len(present)} class; AUROC needs two")
    if num_classes == 2:
        positive = scores[:, 1]
        return {
            "auroc": float(auroc(positive, y, task="binary")),
            "ap": float(average_precision(positive, y, task="binary")),
        }
    # One-vs-rest per class present in the test split, averaged with equal weight per class.
    aurocs, aps = [], []
    for c in present.tolist():
        target = (y == c).long()
        aurocs.append(float(auroc(scores[:, c], target, task="binary")))
        aps.append(float(average_precision(scores[:, c], target, task="binary")))
    return {"auroc": float(np.mean(aurocs)), "ap": float(np.mean(aps))}


def probe_auroc(fit: LinearResult, test_y: Tensor, num_classes: int) -> dict[str, float]:
    """`auroc_ap` on test of the probe whose penalty is best by AUROC on val, that penalty (`l2`) and its AUROC on
    val (`val_auroc`): the probe reports the metric it was chosen on. Where val holds one class, the probe's own
    choice (by accuracy), and no `val_auroc`."""

    def on_val(val_scores: Tensor, val_y: Tensor) -> float:
        return auroc_ap(val_scores, val_y, num_classes)["auroc"]

    try:
        l2, scores = fit.best_by(on_val)
        val = {"val_auroc": on_val(fit.probabilities_by_l2[l2][0], fit.val_y)}
    except UnsupportedProtocol:
        l2, scores, val = fit.metrics["l2"], fit.test_scores, {}
    return {**auroc_ap(scores.cpu(), test_y[labelled(test_y)].cpu(), num_classes), "l2": l2, **val}


# -- RBF-SVM ----------------------------------------------------------------------------------------------


def svm_rbf(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    c_grid: tuple[float, ...] = SVM_C_GRID,
    folds: int = 5,
    max_train_samples: int = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Test accuracy of an RBF-SVM (gamma "scale") with C chosen by stratified k-fold CV on train.

    As TS2Vec's `fit_svm` does: at most `max_train_samples` training samples (a seeded stratified subset),
    and a hard margin (C = inf) without a search when train holds fewer than 50 samples or fewer than 5 per
    class on average (ArrowHead, GunPoint's 40 after the holdout), or when some class has fewer than two
    samples to cross-validate. Returns `acc` and the chosen `C`.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    if is_multilabel(train_y):
        raise UnsupportedProtocol("svm", "multi-label data: an SVM classifies one class per sample")
    require_classes("svm", train_y, "train")
    require_classes("svm", test_y, "test", minimum=1)
    keep = labelled(train_y)
    x, y = train_x[keep].double().cpu().numpy(), train_y[keep].cpu().numpy()
    if len(y) > max_train_samples:
        chosen = stratified_subset(torch.from_numpy(y), max_train_samples / len(y), seed).numpy()
        x, y = x[chosen], y[chosen]
    classes = np.unique(y)
    smallest = int(np.bincount(y)[classes].min())
    too_few = len(y) < SVM_SEARCH_MIN_SAMPLES or len(y) // len(classes) < SVM_SEARCH_MIN_PER_CLASS
    if too_few or smallest < 2:
        svm, c = SVC(C=math.inf, kernel="rbf", gamma="scale").fit(x, y), math.inf
    else:
        cv = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
        search = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": list(c_grid)}, cv=cv).fit(x, y)
        svm, c = search.best_estimator_, float(search.best_params_["C"])
    test_keep = labelled(test_y)
    predicted = svm.predict(test_x[test_keep].double().cpu().numpy())
    return {"acc": float((predicted == test_y[test_keep].cpu().numpy()).mean()), "C": c}


# -- labelled subsets for fine-tuning ----------------------------------------------------------


def stratified_subset(y: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """Sorted indices of a seeded subset holding `fraction` of each class's labelled samples (at least
    one per class). Multi-label data: a seeded random `fraction` of the labelled samples."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    known = labelled(y).nonzero().flatten()
    if is_multilabel(y):
        count = max(1, round(fraction * len(known)))
        return known[torch.randperm(len(known), generator=generator)[:count]].sort().values
    chosen = []
    for c in y[known].unique().tolist():
        members = known[y[known] == c]
        count = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(chosen).sort().values
