"""The offline protocols on synthetic features, checked by hand or against scikit-learn."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

from contrastlab.evaluation import protocols as P
from contrastlab.metrics.knn import knn_accuracy


def blobs(n_per_class: int, num_classes: int, dim: int = 8, spread: float = 0.1, seed: int = 0):
    """Well separated classes: class c sits around 5 * e_c."""
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.eye(num_classes, dim)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


def test_knn_grid_names_each_k_and_agrees_with_knn_accuracy():
    x, y = blobs(20, 3)
    q, qy = blobs(5, 3, seed=1)
    qy[0] = 1  # one query in the wrong cluster: 14 of 15 right at every k
    out = P.knn_grid(x, y, q, qy, 3, ks=(1, 5, 60))
    assert list(out) == ["top1_k1", "top1_k5", "top1_k60"]
    assert out["top1_k1"] == pytest.approx(14 / 15)
    assert out["top1_k60"] == pytest.approx(knn_accuracy(x, y, q, qy, 3, k=60))


def test_knn_refuses_multilabel_and_one_class_data():
    x, _ = blobs(4, 2)
    with pytest.raises(P.UnsupportedProtocol, match="knn: multi-label"):
        P.knn_grid(x, torch.ones(8, 3, dtype=torch.long), x, torch.ones(8, 3, dtype=torch.long), 3)
    with pytest.raises(P.UnsupportedProtocol, match="knn: the train split holds 1 class"):
        P.knn_grid(x, torch.zeros(8, dtype=torch.long), x, torch.zeros(8, dtype=torch.long), 2)
    with pytest.raises(P.UnsupportedProtocol, match="no labelled samples"):
        P.knn_grid(x, torch.full((8,), -1), x, torch.full((8,), -1), 2)


def test_lbfgs_logistic_regression_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 5, generator=g, dtype=torch.float64).float()
    y = (x[:, 0] + 0.5 * torch.randn(120, generator=g) > 0).long() + (x[:, 1] > 0.8).long()  # 3 classes, noisy
    l2 = 0.01
    w, b = P.fit_logistic(x, y, 3, l2)
    ours = (x @ w + b).softmax(dim=1)
    ref = LogisticRegression(C=1 / (l2 * len(x)), max_iter=5000, tol=1e-10).fit(x.numpy(), y.numpy())
    assert np.abs(ours.numpy() - ref.predict_proba(x.numpy())).max() < 2e-3


def test_knn_standardized_ignores_loud_dimensions_that_decide_the_raw_cosine():
    x, y = blobs(20, 3, spread=0.5)
    q, qy = blobs(10, 3, spread=0.5, seed=1)
    g = torch.Generator().manual_seed(2)
    loud = lambda n: 20 * torch.randn(n, 4, generator=g)  # noqa: E731  pure noise, 4x the class signal's scale
    x, q = torch.cat([x, loud(len(x))], dim=1), torch.cat([q, loud(len(q))], dim=1)
    raw = P.knn_grid(x, y, q, qy, 3, ks=(1,))["top1_k1"]
    standardized = P.knn_grid(x, y, q, qy, 3, ks=(1,), standardize=True)["top1_k1"]
    assert raw < 0.5 and standardized > 0.9
    mean, std = x.mean(dim=0), x.std(dim=0)  # by hand: the same vote on z-scored features
    assert standardized == knn_accuracy((x - mean) / std, y, (q - mean) / std, qy, 3, k=1)


def test_linear_probe_chooses_the_penalty_on_val_and_reports_test():
    x, y = blobs(30, 4)
    vx, vy = blobs(10, 4, seed=1)
    tx, ty = blobs(10, 4, seed=2)
    out = P.linear_probe(x, y, vx, vy, tx, ty, 4, l2_grid=(1.0, 1e-2, 1e-4))
    assert out.metrics["top1"] == 1.0 and out.metrics["val_top1"] == 1.0
    best = max(out.val_scores_by_l2.values())
    assert out.metrics["l2"] == max(l2 for l2, s in out.val_scores_by_l2.items() if s == best)  # ties: stronger
    assert out.test_scores.shape == (40, 4) and torch.allclose(out.test_scores.sum(dim=1), torch.ones(40))


def test_linear_probe_reports_on_test_the_fit_that_was_best_on_val():
    g = torch.Generator().manual_seed(0)
    x, vx, tx = (torch.randn(n, 20, generator=g) for n in (60, 100, 100))
    noisy = lambda z: ((z[:, 0] + z[:, 1] + torch.randn(len(z), generator=g)) > 0).long()  # noqa: E731
    y, vy, ty = noisy(x), noisy(vx), noisy(tx)
    grid = (10.0, 1e-1, 1e-6)
    out = P.linear_probe(x, y, vx, vy, tx, ty, 2, l2_grid=grid)
    chosen = out.metrics["l2"]
    assert out.val_scores_by_l2[chosen] == max(out.val_scores_by_l2.values()) == out.metrics["val_top1"]
    # the same fit by hand: standardise with train statistics, fit with the chosen penalty, score test
    mean, std = x.mean(dim=0), x.std(dim=0)
    w, b = P.fit_logistic((x - mean) / std, y, 2, chosen)
    by_hand = ((((tx - mean) / std) @ w + b).argmax(dim=1) == ty).float().mean().item()
    assert out.metrics["top1"] == pytest.approx(by_hand, abs=0.011)  # warm starts may end a hair apart


def test_probe_auroc_chooses_the_penalty_by_val_auroc_and_reports_its_test_auroc():
    g = torch.Generator().manual_seed(0)
    x, vx, tx = (torch.randn(n, 30, generator=g) for n in (200, 100, 300))
    noisy = lambda z: ((z[:, 0] + 0.5 * z[:, 1] + 1.5 * torch.randn(len(z), generator=g)) > 0).long()  # noqa: E731
    y, vy, ty = noisy(x), noisy(vx), noisy(tx)
    grid = (10.0, 1.0, 1e-1, 1e-2, 1e-4)
    fit = P.linear_probe(x, y, vx, vy, tx, ty, 2, l2_grid=grid)
    out = P.probe_auroc(fit, ty, 2)
    # by hand with scikit-learn on train-standardised features: the best val AUROC, its test AUROC. C = 2 / (l2 N):
    # the probe's two softmax columns each carry half the binary weight, so their penalty is half the binary one's.
    mean, std = x.mean(dim=0), x.std(dim=0)
    z, vz, tz = (((a - mean) / std).double().numpy() for a in (x, vx, tx))
    fits = {l2: LogisticRegression(C=2 / (l2 * len(y)), max_iter=5000).fit(z, y) for l2 in grid}
    val_auroc = {l2: roc_auc_score(vy, f.predict_proba(vz)[:, 1]) for l2, f in fits.items()}
    chosen = max(sorted(grid, reverse=True), key=val_auroc.get)
    assert out["l2"] == chosen
    assert out["auroc"] == pytest.approx(roc_auc_score(ty, fits[chosen].predict_proba(tz)[:, 1]), abs=2e-3)
    assert out["val_auroc"] == pytest.approx(val_auroc[chosen], abs=2e-3)  # what it was chosen on, reported
    assert len({round(v, 4) for v in val_auroc.values()}) > 1  # the penalties differ on val: the choice matters


def test_probe_auroc_keeps_the_accuracy_choice_when_val_holds_one_class():
    x, y = blobs(20, 2, spread=2.0)
    tx, ty = blobs(10, 2, spread=2.0, seed=2)
    fit = P.linear_probe(x, y, x[:5], y[:5], tx, ty, 2)  # val: five samples of class 0
    out = P.probe_auroc(fit, ty, 2)
    assert out["l2"] == fit.metrics["l2"]
    assert out["auroc"] == P.auroc_ap(fit.test_scores, ty, 2)["auroc"]
    assert "val_auroc" not in out


def test_multilabel_probe_reports_mean_average_precision():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, :3] > 0).long()  # three labels, each a sign
    out = P.linear_probe(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], 3)
    assert set(out.metrics) == {"map", "val_map", "l2"} and out.metrics["map"] > 0.95
    assert out.test_scores.shape == (50, 3) and (out.test_scores <= 1).all()


def test_auroc_ap_binary_multiclass_and_multilabel_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (100,), generator=g)
    p1 = (y.float() + torch.randn(100, generator=g)).sigmoid()
    out = P.auroc_ap(torch.stack([1 - p1, p1], dim=1), y, 2)
    assert out["auroc"] == pytest.approx(roc_auc_score(y, p1), abs=1e-5)
    assert out["ap"] == pytest.approx(average_precision_score(y, p1), abs=1e-5)

    y = torch.randint(0, 4, (200,), generator=g)
    scores = (torch.nn.functional.one_hot(y, 4).float() + torch.randn(200, 4, generator=g)).softmax(dim=1)
    out = P.auroc_ap(scores, y, 4)
    assert out["auroc"] == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"), abs=1e-5)
    onehot = np.eye(4)[y]
    assert out["ap"] == pytest.approx(average_precision_score(onehot, scores, average="macro"), abs=1e-5)

    y = torch.randint(0, 2, (150, 3), generator=g)
    scores = (y.float() + torch.randn(150, 3, generator=g)).sigmoid()
    out = P.auroc_ap(scores, y, 3)
    assert out["auroc"] == pytest.approx(roc_auc_score(y, scores, average="macro"), abs=1e-5)
    assert out["ap"] == pytest.approx(average_precision_score(y, scores, average="macro"), abs=1e-5)


def test_auroc_refuses_a_test_split_of_one_class():
    with pytest.raises(P.UnsupportedProtocol, match="auroc: the test split holds 1 class"):
        P.auroc_ap(torch.rand(5, 3).softmax(dim=1), torch.ones(5, dtype=torch.long), 3)


def test_svm_chooses_c_by_cross_validation_like_sklearn():
    x, y = blobs(20, 3, spread=2.0)
    tx, ty = blobs(10, 3, spread=2.0, seed=3)
    out = P.svm_rbf(x, y, tx, ty, c_grid=(0.01, 1.0, 100.0), folds=3, seed=0)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    ref = GridSearchCV(SVC(kernel="rbf", gamma="scale"), {"C": [0.01, 1.0, 100.0]}, cv=cv).fit(x.double().numpy(), y)
    assert out["C"] == ref.best_params_["C"]
    assert out["acc"] == pytest.approx((ref.predict(tx.double().numpy()) == ty.numpy()).mean())
    assert out["acc"] > 0.8


@pytest.mark.parametrize("per_class, classes", [(16, 3), (4, 13)])
def test_svm_uses_a_hard_margin_on_small_train_sets_as_ts2vec_does(per_class, classes):
    # 48 samples (under 50), then 52 samples of 13 classes (4 per class, under 5): no search.
    x, y = blobs(per_class, classes, dim=16, spread=2.0)
    out = P.svm_rbf(x, y, x, y)
    ref = SVC(C=math.inf, kernel="rbf", gamma="scale").fit(x.double().numpy(), y)
    assert out["C"] == math.inf
    assert out["acc"] == pytest.approx((ref.predict(x.double().numpy()) == y.numpy()).mean())


def test_svm_searches_c_from_50_samples_with_5_per_class():
    x, y = blobs(25, 2, spread=2.0)
    out = P.svm_rbf(x, y, x, y, c_grid=(0.01, 1.0), folds=3)
    assert out["C"] in (0.01, 1.0)


def test_svm_uses_a_hard_margin_when_a_class_is_too_small_to_cross_validate():
    x, y = blobs(3, 2)
    x, y = x[:4], y[:4]  # class 1 holds one sample
    out = P.svm_rbf(x, y, x, y)
    assert out["C"] == math.inf and out["acc"] == 1.0


def test_svm_refuses_multilabel():
    with pytest.raises(P.UnsupportedProtocol, match="svm: multi-label"):
        P.svm_rbf(torch.randn(4, 2), torch.ones(4, 2, dtype=torch.long), torch.randn(4, 2), torch.ones(4, 2))


def test_stratified_subset_is_seeded_per_class_and_skips_unlabelled():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 3 + [-1] * 10)
    a = P.stratified_subset(y, 0.1, seed=0)
    assert torch.equal(a, P.stratified_subset(y, 0.1, seed=0))
    assert not torch.equal(a, P.stratified_subset(y, 0.1, seed=1))
    counts = torch.bincount(y[a], minlength=3)
    assert counts.tolist() == [5, 3, 1]  # round(10% of each), at least one per class
    assert (y[a] >= 0).all() and torch.equal(a, a.sort().values) and len(a.unique()) == len(a)
    assert torch.equal(P.stratified_subset(y, 1.0), (y >= 0).nonzero().flatten())
    with pytest.raises(ValueError, match="fraction"):
        P.stratified_subset(y, 0.0)
