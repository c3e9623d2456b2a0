"""Contrastive losses as pure functions of tensors.

Each takes embeddings already gathered across ranks when the method wants global negatives, and
returns a scalar to minimise. Formulas and papers are in the docstrings; tests compare each with a
plain loop written from the formula.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.blocked import blocked_info_nce, blocked_negative_logsumexp

LossFn = TypeVar("LossFn", bound=Callable[..., Tensor])


def _float32(value):
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, list | tuple) and value and all(isinstance(v, Tensor) for v in value):
        return type(value)(_float32(v) for v in value)
    return value


def in_float32(loss: LossFn) -> LossFn:
    """Run a loss in float32 with autocast off, whatever the trainer's precision.

    Under `trainer.precision bf16-mixed` (or 16-mixed) autocast would run the similarity matmul in bf16,
    whose 8-bit mantissa leaves cosines near 1 only about 1e-2 apart; divided by a temperature of 0.1 and
    exponentiated, that is a visible error in the logits. The embeddings are small (N x D), so computing
    every loss in float32 costs nothing measurable next to the backbone, which keeps autocast.
    """

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        if not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
            return loss(*args, **kwargs)
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return loss(*(_float32(a) for a in args), **{k: _float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


@in_float32
def multi_positive_info_nce(z: Tensor, positives: Tensor, temperature: float, margin: float = 0.0) -> Tensor:
    """InfoNCE with any set of positives per anchor; NT-Xent and SupCon are special cases.

    For L2-normalised rows z_i and s_ij = z_i . z_j / T (Khosla et al. 2020, eq. 2, "L_out"):

        loss_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )

    averaged over the anchors i that have at least one positive. An additive margin m > 0 (AM-Softmax,
    Wang et al. 2018; used for speaker embeddings, e.g. Lepage & Dehak 2022) replaces s_ip by
    (z_i . z_p - m) / T for every positive, in the numerator and the denominator alike.

    Args:
        z: (M, D) embeddings, not necessarily normalised.
        positives: (M, M) bool, True where j is a positive of i; the diagonal is ignored.
        temperature: T > 0.
        margin: m >= 0 subtracted from the cosine similarity of positive pairs.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    z = F.normalize(z, dim=1)
    m = z.shape[0]
    self_mask = torch.eye(m, dtype=torch.bool, device=z.device)
    positives = positives & ~self_mask
    similarity = z @ z.T
    if margin:
        similarity = similarity - margin * positives.to(similarity.dtype)
    logits = (similarity / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_pos = positives.sum(dim=1)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    has_pos = n_pos > 0
    if not has_pos.any():
        raise ValueError("no anchor has a positive: check the views or labels given to the loss")
    return per_anchor[has_pos].mean()


def view_positives(batch_size: int, num_views: int, device: torch.device | None = None) -> Tensor:
    """(V*B, V*B) bool mask: rows/columns are views stacked view-major; positives are views of one sample."""
    sample = torch.arange(batch_size, device=device).repeat(num_views)
    return sample[:, None] == sample[None, :]


@in_float32
def nt_xent(
    z1: Tensor, z2: Tensor, temperature: float = 0.2, margin: float = 0.0, block_rows: int | None = None
) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

    With the 2N embeddings [z1; z2] and s_ij the cosine similarity over T,

        l(i, j) = -log( exp(s_ij) / sum_{k != i} exp(s_ik) ),
        loss    = 1/(2N) * sum_k [ l(k, N+k) + l(N+k, k) ].

    Args:
        z1, z2: (N, D) embeddings of two views of the same N samples, row k of each a positive pair.
        temperature: T > 0.
        margin: additive margin on the positive pair's cosine (see `multi_positive_info_nce`).
        block_rows: compute by blocks of this many anchors, never holding the (2N, 2N) matrix
            (`modules/blocked.py`; what GradCache's large batches need); None: in one piece.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"the two views' embeddings differ in shape: {tuple(z1.shape)} vs {tuple(z2.shape)}")
    sample = torch.arange(z1.shape[0], device=z1.device).repeat(2)
    return keyed_info_nce(torch.cat([z1, z2]), [sample], temperature, margin, block_rows)


def keyed_info_nce(
    z: Tensor, keys: list[Tensor], temperature: float, margin: float = 0.0, block_rows: int | None = None
) -> Tensor:
    """`multi_positive_info_nce` whose positives share a value >= 0 of some key (sample index, class, group):
    in one piece, or by blocks of rows when `block_rows` is set and smaller than the batch."""
    if block_rows is not None and block_rows < z.shape[0]:
        return blocked_info_nce(z, keys, temperature, margin, block_rows)
    positives = label_positives(keys[0])
    for key in keys[1:]:
        positives = positives | label_positives(key)
    return multi_positive_info_nce(z, positives, temperature, margin)


# -- momentum, predictor and memory methods (MoCo v2/v3, BYOL, SimSiam, NNCLR) -------------------------


@in_float32
def info_nce(query: Tensor, keys: Tensor, temperature: float) -> Tensor:
    """InfoNCE with in-batch negatives (van den Oord et al. 2018), the loss of MoCo v3 and NNCLR.

    Row i of `keys` is the positive of query i and the other rows are its negatives; with
    s_ij = q_i . k_j / T over L2-normalised rows,

        loss = -1/N * sum_i log( exp(s_ii) / sum_j exp(s_ij) ).

    Args:
        query, keys: (N, D) embeddings, not necessarily normalised.
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.shape != keys.shape:
        raise ValueError(f"queries and keys differ in shape: {tuple(query.shape)} vs {tuple(keys.shape)}")
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(query.shape[0], device=query.device))


@in_float32
def queue_info_nce(query: Tensor, keys: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE (He et al. 2020, eq. 1): one positive key per query, the queue as negatives.

    With L2-normalised q_i, k_i and queue rows n_m,

        loss = -1/N * sum_i log( exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_m exp(q_i.n_m / T)) ).

    Args:
        query, keys: (N, D); row i of keys is the positive of query i (other keys are not negatives).
        queue: (M, D) negatives, M >= 0.
        temperature: T > 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if query.shape != keys.shape:
        raise ValueError(f"queries and keys differ in shape: {tuple(query.shape)} vs {tuple(keys.shape)}")
    q, k, n = (F.normalize(t, dim=1) for t in (query, keys, queue))
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ n.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@in_float32
def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2): ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), mean over the batch.

    The target gets no special treatment here: the method passes it from the EMA network or detached.
    """
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=1)).mean()


@in_float32
def negative_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """SimSiam's D(p, z) = -p/||p|| . z/||z|| (Chen & He 2021, eq. 1), mean over the batch.

    The stop-gradient of SimSiam's loss belongs to the method, which passes `z.detach()`.
    """
    return -F.cosine_similarity(prediction, target, dim=1).mean()


# -- Loss-defined methods: SupCon, Barlow Twins, VICReg, DCL/DCLW, NCL, mean-shifted contrastive ---------------


def label_positives(labels: Tensor) -> Tensor:
    """(M, M) bool: True where two samples carry the same label; unlabelled samples (label -1) match nothing."""
    labelled = labels >= 0
    return (labels[:, None] == labels[None, :]) & labelled[:, None] & labelled[None, :]


@in_float32
def supcon(
    views: list[Tensor], labels: Tensor, temperature: float = 0.1, margin: float = 0.0, block_rows: int | None = None
) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2, "L_out"): `multi_positive_info_nce` whose
    positives are every view of every sample of the anchor's class.

    Unlabelled samples (label -1) keep their own other views as their only positives, so a batch with no
    labels is NT-Xent over V views.

    Args:
        views: V >= 2 tensors (N, D), the embeddings of V views of the same N samples.
        labels: (N,) class of each sample, -1 where unknown.
        temperature: T > 0. margin: additive margin on positive cosines.
        block_rows: as in `nt_xent`.
    """
    if len(views) < 2:
        raise ValueError(f"SupCon needs at least two views, got {len(views)}")
    n, v = labels.shape[0], len(views)
    sample = torch.arange(n, device=labels.device).repeat(v)
    return keyed_info_nce(torch.cat(views), [sample, labels.repeat(v)], temperature, margin, block_rows)


def _standardise(z: Tensor, eps: float) -> Tensor:
    """Each dimension to zero mean and unit (biased) variance over the batch, as an affine-free BatchNorm."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


@in_float32
def barlow_twins(z1: Tensor, z2: Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1-2): decorrelate the cross-correlation matrix towards identity.

    With each dimension of z1 and z2 standardised over the N samples of the batch,
    C_ij = 1/N sum_b z1_bi z2_bj and

        loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2.

    Args:
        z1, z2: (N, D) embeddings of two views, N >= 2 (the global batch: C is a batch statistic).
        lambd: weight of the off-diagonal (redundancy reduction) term; the paper uses 5.1e-3 for D = 8192.
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"Barlow Twins needs two (N >= 2, D) embeddings of one shape, got {z1.shape} and {z2.shape}")
    c = _standardise(z1, eps).T @ _standardise(z2, eps) / z1.shape[0]
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal


@in_float32
def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """The three VICReg terms (Bardes et al. 2022, eq. 1-5), unweighted: (invariance, variance, covariance).

    s(Z, Z') = 1/N sum_b ||z_b - z'_b||^2 / D                (the mean squared error)
    v(Z)     = 1/D sum_j max(0, gamma - sqrt(Var(z^j) + eps))   (unbiased variance over the batch)
    c(Z)     = 1/D sum_{i != j} Cov(Z)_ij^2
    variance = v(Z) + v(Z'),  covariance = c(Z) + c(Z')
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"VICReg needs two (N >= 2, D) embeddings of one shape, got {z1.shape} and {z2.shape}")
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        n, d = z.shape
        variance = variance + F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (n - 1)
        covariance = covariance + (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d
    return invariance, variance, covariance


@in_float32
def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg (Bardes et al. 2022, eq. 6): lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')].

    The paper's weights are lambda = mu = 25, nu = 1; see `vicreg_terms` for the terms.
    """
    invariance, variance, covariance = vicreg_terms(z1, z2, gamma, eps)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


@in_float32
def dcl(
    z1: Tensor, z2: Tensor, temperature: float = 0.1, sigma: float | None = None, block_rows: int | None = None
) -> Tensor:
    """Decoupled contrastive loss (Yeh et al. 2022, eq. 6): NT-Xent without the positive in the denominator.

    Over the 2N views [z1; z2], L2-normalised, with i' the other view of i and s the cosine similarity,

        loss_i = -w_i s_ii' / T + log sum_{k not in {i, i'}} exp(s_ik / T),   loss = mean over the 2N anchors.

    DCL has w_i = 1. DCLW (`sigma` set) weights positives by a von Mises-Fisher kernel, so that pairs that
    are already close count less: w_i = 2 - exp(s_ii' / sigma) / mean_j exp(s_jj' / sigma).

    The weight keeps its gradient (it is not detached). The paper writes w as a function of the embeddings
    with no stop-gradient, and its authors published no code of their own; the reference implementation
    the paper's users follow, github.com/raminnakhli/Decoupled-Contrastive-Learning (loss/dcl.py,
    commit 0b9b76d, the one lightly cites), multiplies the positive term by `weight_fn(z1, z2)` without
    detaching it, and so do we. lightly 1.6 detaches it (its PR #793 says the paper does not mention
    it); `tests/modules/test_losses_zoo.py` checks that our gradient is the reference's, not lightly's.

    Args:
        z1, z2: (N, D), N >= 2, rows k of each a positive pair.
        temperature: T > 0. sigma: the DCLW kernel width (the paper uses 0.5), None for DCL.
        block_rows: the negatives' log-sum-exp by blocks of this many anchors (`modules/blocked.py`), as
            `nt_xent`'s; the weight and the positive term need only the 2N positive similarities.
    """
    if temperature <= 0 or (sigma is not None and sigma <= 0):
        raise ValueError(f"temperature and sigma must be > 0, got {temperature} and {sigma}")
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"DCL needs two (N >= 2, D) embeddings of one shape, got {z1.shape} and {z2.shape}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    positive = (z[:n] * z[n:]).sum(dim=1).repeat(2)  # s_ii' for all 2N anchors
    weight = 2 - 2 * n * torch.softmax(positive / sigma, dim=0) if sigma is not None else 1.0
    if block_rows is not None and block_rows < 2 * n:
        sample = torch.arange(n, device=z.device).repeat(2)
        log_norm = blocked_negative_logsumexp(z, [sample], temperature, block_rows)
    else:
        negatives = (z @ z.T / temperature).masked_fill(view_positives(n, 2, device=z.device), float("-inf"))
        log_norm = torch.logsumexp(negatives, dim=1)
    return (-weight * positive / temperature + log_norm).mean()


@in_float32
def non_negative_nt_xent(
    z1: Tensor, z2: Tensor, temperature: float = 0.2, margin: float = 0.0, block_rows: int | None = None
) -> Tensor:
    """Non-negative contrastive learning (Wang et al. 2024, "Non-negative Contrastive Learning", eq. 6):
    NT-Xent on ReLU(z), so that every feature is a non-negative, sparse and more interpretable activation.
    An all-zero row has similarity 0 to everything.
    """
    return nt_xent(F.relu(z1), F.relu(z2), temperature, margin, block_rows)


@in_float32
def mean_shifted_contrastive(
    f1: Tensor, f2: Tensor, center: Tensor, temperature: float = 0.25, angular_weight: float = 1.0
) -> Tensor:
    """Mean-shifted contrastive loss with the angular center loss (Reiss & Hoshen 2023, eq. 3-6).

    phi(x) = f(x)/||f(x)|| and c is the unit-normalised mean of phi over the normal training set, fixed
    before adaptation. Views are compared around c rather than around the origin:

        theta(x) = (phi(x) - c) / ||phi(x) - c||,
        loss     = NT-Xent(theta(x'), theta(x''); T) + angular_weight * mean_x -phi(x) . c

    where the mean of the angular term runs over both views of every sample.

    Args:
        f1, f2: (N, D) backbone features of two views. center: (D,), normalised here.
        temperature: T of NT-Xent (0.25 in the paper).
    """
    c = F.normalize(center, dim=0)
    phi1, phi2 = F.normalize(f1, dim=1), F.normalize(f2, dim=1)
    contrastive = nt_xent(phi1 - c, phi2 - c, temperature)  # nt_xent normalises the shifted rows
    angular = -torch.cat([phi1, phi2]) @ c
    return contrastive + angular_weight * angular.mean()


# -- Contrastive predictive coding ------------------------------------------------------------------------

CPC_NEGATIVES = ("batch", "sequence", "both")


@in_float32
def cpc_terms(
    predictions: Tensor, targets: Tensor, mask: Tensor | None = None, negatives: str = "both"
) -> tuple[Tensor, Tensor, Tensor]:
    """CPC's InfoNCE for each prediction step k (van den Oord et al. 2018, eq. 4), and its accuracy.

    predictions[b, k-1, t] = W_k c_t predicts the latent z_{t+k} of sequence b; with the log-bilinear score
    f_k(z, c_t) = exp(z^T W_k c_t) (no normalisation, no temperature: W_k learns the scale),

        loss_k = -mean_{(b, t)} log( exp(z_{b,t+k} . p_{b,k,t}) / sum_{z' in X(b, t+k)} exp(z' . p_{b,k,t}) )

    over the anchors (b, t) whose steps t and t+k are both real. The candidates X(b, s) hold the positive
    z_{b,s} and the negatives:
        "batch":    z_{b',s}, the same step of the other sequences (the paper's "mixed speaker" negatives);
        "sequence": z_{b,s'}, the other steps of the same sequence ("same speaker");
        "both":     z_{b',s'}, every step of every sequence of the batch.
    Padded steps (mask False) are never candidates. The scores use every candidate (no sampling).

    Args:
        predictions: (B, K, S, D). targets: (B, S, D). mask: (B, S) bool, True on real steps; None = all real.
        negatives: "batch", "sequence" or "both".

    Returns:
        (loss_k, accuracy_k, anchors_k), each (K,): the mean loss and top-1 accuracy of each k (0 where k
        has no anchor) and how many anchors each k has.
    """
    if negatives not in CPC_NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(CPC_NEGATIVES)}, got {negatives!r}")
    b, k_max, s, d = predictions.shape
    if targets.shape != (b, s, d):
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} disagree")
    if mask is None:
        mask = torch.ones(b, s, dtype=torch.bool, device=targets.device)
    losses, accuracies, counts = [], [], []
    for k in range(1, k_max + 1):
        if k >= s:  # no step has a step k ahead
            losses.append(predictions.sum() * 0)  # zero, in the graph
            accuracies.append(predictions.new_zeros(()))
            counts.append(torch.zeros((), dtype=torch.long, device=predictions.device))
            continue
        p = predictions[:, k - 1, : s - k]  # (B, S-k, D): predictions made at t for t+k
        anchors = mask[:, : s - k] & mask[:, k:]  # (B, S-k)
        if negatives == "batch":  # logits[b, t, b'] = z_{b', t+k} . p_{b,t}
            logits = torch.einsum("btd,ctd->btc", p, targets[:, k:])
            candidates = mask[:, k:].T[None].expand(b, -1, -1)
            positive = torch.arange(b, device=p.device)[:, None].expand(-1, s - k)
        elif negatives == "sequence":  # logits[b, t, s'] = z_{b, s'} . p_{b,t}
            logits = torch.einsum("btd,bsd->bts", p, targets)
            candidates = mask[:, None, :].expand(-1, s - k, -1)
            positive = torch.arange(k, s, device=p.device)[None].expand(b, -1)
        else:  # logits[b, t, (b', s')] = z_{b', s'} . p_{b,t}
            logits = torch.einsum("btd,nd->btn", p, targets.reshape(b * s, d))
            candidates = mask.reshape(1, 1, b * s).expand(b, s - k, -1)
            positive = torch.arange(b, device=p.device)[:, None] * s + torch.arange(k, s, device=p.device)[None]
        # rows of non-anchors keep finite logits, so a row with no candidate gives no NaN to mask away
        logits = logits.masked_fill(~candidates & anchors[..., None], float("-inf"))
        log_prob = logits.log_softmax(dim=-1).gather(-1, positive[..., None]).squeeze(-1)
        correct = logits.argmax(dim=-1) == positive
        n = anchors.sum()
        losses.append(-log_prob.masked_fill(~anchors, 0.0).sum() / n.clamp(min=1))
        accuracies.append((correct & anchors).sum() / n.clamp(min=1))
        counts.append(n)
    return torch.stack(losses), torch.stack(accuracies).float(), torch.stack(counts)


@in_float32
def cpc_info_nce(predictions: Tensor, targets: Tensor, mask: Tensor | None = None, negatives: str = "both") -> Tensor:
    """CPC's loss: the mean over the prediction steps k = 1..K of `cpc_terms`' loss_k (steps with no anchor
    left out). See `cpc_terms` for the formula, the shapes and the choice of negatives."""
    loss_k, _, anchors_k = cpc_terms(predictions, targets, mask, negatives)
    if not (anchors_k > 0).any():
        raise ValueError(
            f"no step t has a real step t+1 to predict: {predictions.shape[2]} steps per sequence; "
            "use longer inputs or smaller encoder strides"
        )
    return loss_k[anchors_k > 0].mean()


# -- Paired (two-tower) losses: ConVIRT, CLIP, CLAP -----------------------------------------------------------


@in_float32
def paired_info_nce(a: Tensor, b: Tensor, temperature: float | Tensor, weight: float = 0.5) -> Tensor:
    """Bidirectional InfoNCE between two modalities, the loss of ConVIRT (Zhang et al. 2020, eqs. 2-4) and,
    with weight 0.5 and a learned temperature, of CLIP (Radford et al. 2021, fig. 3) and CLAP.

    Row i of `a` (say, an image) and row i of `b` (its text) are a pair; every other row of the other side is a
    negative. With cosine similarities s_ij = <a_i, b_j> / T,

        l_i(a->b) = -log( exp(s_ii) / sum_k exp(s_ik) ),   l_i(b->a) = -log( exp(s_ii) / sum_k exp(s_ki) ),
        loss      = 1/N * sum_i [ weight * l_i(a->b) + (1 - weight) * l_i(b->a) ].

    Args:
        a, b: (N, D) embeddings of the two sides in the joint space, not necessarily normalised.
        temperature: T > 0, a number or a 0-dim tensor (CLIP learns 1/T; gradients flow through it).
        weight: lambda in [0, 1], the share of the a->b direction (ConVIRT: 0.75 with a the image).
    """
    if a.shape != b.shape:
        raise ValueError(f"the two sides' embeddings differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if not isinstance(temperature, Tensor) and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return weight * F.cross_entropy(logits, target) + (1 - weight) * F.cross_entropy(logits.T, target)
