"""Contrastive losses of the InfoNCE family, as pure functions of tensors.

Multi-positive InfoNCE and its special cases (NT-Xent, SupCon, keyed positives, additive margins, NCL,
mean-shifted), DCL/DCLW, and InfoNCE with one positive key per query (MoCo v3, NNCLR, the MoCo queue, the
bidirectional loss of paired ConVIRT/CLIP data). Each takes embeddings already gathered across ranks when the
method wants global negatives, and returns a scalar to minimise. Formulas and papers are in the docstrings;
tests compare each with a plain loop written from the formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.losses.blocked import blocked_info_nce, blocked_negative_logsumexp
from contrastlab.modules.losses.precision import in_float32


@in_float32
def multi_positive_info_nce(
    z: Tensor, positives: Tensor, temperature: float, margin: float = 0.0, excluded: Tensor | None = None
) -> Tensor:
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
        excluded: (M, M) bool, True where j is neither a positive nor a negative of i: left out of the
            denominator (G-SimCLR's same-cluster pairs); a positive is never excluded.
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
    left_out = self_mask if excluded is None else self_mask | (excluded & ~positives)
    logits = (similarity / temperature).masked_fill(left_out, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_pos = positives.sum(dim=1)
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    has_pos = n_pos > 0
    # Reading a flag back waits for the device, so only a CPU checks it; on a GPU a batch with no positive at all
    # gives 0/0, a NaN loss that ends the fit (DivergenceGuard). The masked mean needs no sync either, where
    # `per_anchor[has_pos]` would (its size is data-dependent), forward and backward.
    if z.device.type == "cpu" and not has_pos.any():
        raise ValueError("no anchor has a positive: check the views or labels given to the loss")
    return (per_anchor * has_pos).sum() / has_pos.sum()


@in_float32
def guided_nt_xent(z1: Tensor, z2: Tensor, pseudo_labels: Tensor, temperature: float = 0.2) -> Tensor:
    """NT-Xent whose negatives exclude samples of the anchor's cluster, G-SimCLR's loss (Chakraborty et al.
    2020): its batches hold no two images of one pseudo-label, so that no likely same-class pair is pushed
    apart; leaving those pairs out of the denominator is the same loss on any batch. With s the cosine over T,

        l(i, j) = -log( exp(s_ij) / sum_{k != i, c(k) != c(i) or k = j} exp(s_ik) ),

    averaged over the 2N anchors as in `nt_xent`; a pseudo-label of -1 (not clustered yet) excludes nothing.

    Args:
        z1, z2: (N, D) embeddings of two views, row k of each a positive pair.
        pseudo_labels: (N,) cluster of each sample, -1 where unknown.
        temperature: T > 0.
    """
    if z1.shape != z2.shape or pseudo_labels.shape != z1.shape[:1]:
        raise ValueError(
            f"G-SimCLR needs two (N, D) views and N labels, got {z1.shape}, {z2.shape}, {pseudo_labels.shape}"
        )
    n = z1.shape[0]
    same_cluster = label_positives(pseudo_labels.repeat(2))
    return multi_positive_info_nce(
        torch.cat([z1, z2]), view_positives(n, 2, z1.device), temperature, excluded=same_cluster
    )


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
            (`losses/blocked.py`; what GradCache's large batches need); None: in one piece.
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


# -- One positive key per query: momentum and memory methods (MoCo v2/v3, NNCLR) ----------------------------


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


# -- Loss-defined methods: SupCon, DCL/DCLW, NCL, mean-shifted contrastive ------------------------------------


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
        block_rows: the negatives' log-sum-exp by blocks of this many anchors (`losses/blocked.py`), as
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


# -- Conditionally weighted attraction and repulsion: CACR ---------------------------------------------------------


@in_float32
def cacr(
    views: list[Tensor], tau_pos: float = 1.0, tau_neg: float = 1.0, alpha: float = 1.0, beta: float = 1.0
) -> Tensor:
    """Contrastive attraction and contrastive repulsion (Zheng et al. 2021, "Contrastive Attraction and Contrastive
    Repulsion for Representation Learning", eq. 4-6), with the squared Euclidean cost of L2-normalised embeddings.

    For a query x_i of view a, its positives are its other views x_i^b and its negatives the other samples x_j
    (j != i) of each other view b. Each side is weighted by a conditional distribution over it:

        pi+(b | i, a)   = softmax_b( tau_pos * |z_i^a - z_i^b|^2 )           (the farther positive pulled harder)
        pi-(j | i, a, b) = softmax_j( -tau_neg * |z_i^a - z_j^b|^2 ), j != i   (the nearer negative pushed harder)
        attraction = mean_{a, i} sum_b pi+ * alpha * |z_i^a - z_i^b|^2
        repulsion  = mean_{a < b} mean_i sum_j pi- * (-beta) * |z_i^a - z_j^b|^2
        loss       = attraction + repulsion

    as the authors' code (github.com/JegZheng/CACR-SSL, small_scale_experiments/losses) computes it: the
    weights keep their gradient, and repulsion runs over each unordered pair of views once. With two views
    the attraction weight is 1.

    Args:
        views: V >= 2 tensors (N, D), N >= 2, the embeddings of V views of the same N samples.
        tau_pos, tau_neg: the conditional distributions' inverse temperatures (>= 0; 0 weighs uniformly).
        alpha, beta: the weights of attraction and repulsion (> 0).
    """
    if len(views) < 2 or views[0].shape[0] < 2:
        raise ValueError(f"CACR needs at least two views of at least two samples, got {len(views)} views")
    if min(tau_pos, tau_neg) < 0 or min(alpha, beta) <= 0:
        raise ValueError(
            f"CACR needs tau_pos, tau_neg >= 0 and alpha, beta > 0; got {tau_pos}, {tau_neg}, {alpha}, {beta}"
        )
    z = torch.stack([F.normalize(v, dim=1) for v in views])  # (V, N, D)
    v, n = z.shape[:2]
    # (V, V, N): |z_i^a - z_i^b|^2, whose diagonal a = b is left out of each query's positives
    pos_cost = (z[:, None] - z[None, :]).pow(2).sum(dim=-1)
    others = ~torch.eye(v, dtype=torch.bool, device=z.device)[:, :, None].expand_as(pos_cost)
    pos_weight = torch.softmax((tau_pos * pos_cost).masked_fill(~others, float("-inf")), dim=1)
    attraction = (alpha * pos_cost * pos_weight).masked_fill(~others, 0.0).sum(dim=1).mean()
    a, b = torch.triu_indices(v, v, offset=1, device=z.device)
    neg_cost = 2 - 2 * z[a] @ z[b].transpose(1, 2)  # (pairs, N, N): |z_i^a - z_j^b|^2 of unit vectors
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    neg_weight = torch.softmax((-tau_neg * neg_cost).masked_fill(self_pair, float("-inf")), dim=2)
    repulsion = (-beta * neg_cost * neg_weight).masked_fill(self_pair, 0.0).sum(dim=2).mean()
    return attraction + repulsion
