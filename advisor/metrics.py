"""Pure numpy metrics: is a pretrained feature space worth using on these labels?

Three families, all plain functions over arrays (sklearn style: the data first,
keyword-only options after it, a float or a small dict back):

* **Transferability** of features to target labels: :func:`logme`, :func:`leep`,
  :func:`nce`, :func:`hscore`, the cross-validated kNN and linear probes of
  :func:`probe_report`, and the probe's :func:`learning_curve`.
* **Distance to ImageNet without ImageNet data**: :func:`gaussian_kl`,
  :func:`frechet_distance` (:func:`frechet_distance_diag` for diagonal Gaussians) and
  :func:`softmax_signals`.
* **Rank agreement** between a metric and measured accuracies:
  :func:`weighted_kendall_tau`.

Every function validates its inputs and raises :class:`ValueError` naming the
offending argument; nothing draws from global random state.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

__all__ = [
    "logme",
    "leep",
    "nce",
    "hscore",
    "probe_report",
    "learning_curve",
    "gaussian_kl",
    "frechet_distance",
    "frechet_distance_diag",
    "softmax_signals",
    "weighted_kendall_tau",
    "weighted_tau_interval",
    "paired_difference",
]

# Bounds for LogME's precisions: keeps log() finite on degenerate inputs (all-zero
# features, a perfectly fitted target) without touching any realistic optimum.
_PRECISION_MIN = 1e-30
_PRECISION_MAX = 1e30


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def _as_float_array(x: object, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Return ``x`` as a finite, non-empty float64 array of the given rank(s)."""
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _as_labels(labels: object, n: int | None = None, name: str = "labels") -> np.ndarray:
    """Return integer labels as a 1-D int64 array, checking the length against ``n``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the data has {n} rows")
    return arr.astype(np.int64, copy=False)


def _encode(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map arbitrary integer labels to 0..C-1; returns (codes, counts per class)."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return codes.ravel(), counts


def _features_and_labels(features: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    x = _as_float_array(features, "features", 2)
    y = _as_labels(labels, x.shape[0])
    return x, y


# ----------------------------------------------------------------------------
# Transferability scores
# ----------------------------------------------------------------------------


def _logme_per_class(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximised log evidence of each one-hot target column, with its alpha and beta.

    The model is ``y = F w + noise``, ``w ~ N(0, I/alpha)``, ``noise ~ N(0, 1/beta)``.
    With the economy SVD ``F = U diag(s) V^T`` (k = min(n, d) singular values) and
    ``z = U^T y``, every quantity of MacKay's fixed point is O(k) per iteration:
    the posterior mean lives in the row space of F, and directions of weight space
    that F never sees only contribute ``(d - k) log alpha`` to ``log|A|``.

    Returns:
        ``(evidence, alpha, beta)``, each of shape (C,): the un-normalised log
        evidence at the converged precisions, in the order of ``np.unique(labels)``.
    """
    n, d = features.shape
    codes, _ = _encode(labels)
    targets = np.eye(codes.max() + 1)[codes]  # (n, C) one-hot
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    s = s[:, None]  # (k, 1), broadcast against the C target columns
    s2 = s**2
    z = u.T @ targets  # (k, C)
    # The part of y outside F's column space is a residual no weight vector can fit.
    y_perp_sq = np.maximum((targets**2).sum(axis=0) - (z**2).sum(axis=0), 0.0)

    def moments(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, ...]:
        denom = alpha + beta * s2
        gamma = (beta * s2 / denom).sum(axis=0)
        m_sq = ((beta * s * z / denom) ** 2).sum(axis=0)
        res_sq = y_perp_sq + ((alpha * z / denom) ** 2).sum(axis=0)
        return denom, gamma, m_sq, res_sq

    n_classes = targets.shape[1]
    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    tiny = np.finfo(np.float64).tiny
    for _ in range(max_iter):
        _, gamma, m_sq, res_sq = moments(alpha, beta)
        new_alpha = np.clip(gamma / np.maximum(m_sq, tiny), _PRECISION_MIN, _PRECISION_MAX)
        new_beta = np.clip((n - gamma) / np.maximum(res_sq, tiny), _PRECISION_MIN, _PRECISION_MAX)
        done = np.all(np.abs(new_alpha - alpha) <= tol * alpha) and np.all(
            np.abs(new_beta - beta) <= tol * beta
        )
        alpha, beta = new_alpha, new_beta
        if done:
            break

    denom, _, m_sq, res_sq = moments(alpha, beta)
    k = s.shape[0]
    log_det_a = np.log(denom).sum(axis=0) + (d - k) * np.log(alpha)
    evidence = (
        0.5 * n * np.log(beta)
        + 0.5 * d * np.log(alpha)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * res_sq
        - 0.5 * alpha * m_sq
        - 0.5 * log_det_a
    )
    return evidence, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: log of the maximum evidence of a Bayesian linear model on the features.

    You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021. Each class becomes a one-hot regression target; the
    evidence ``p(y | F, alpha, beta)`` is maximised over the prior precision alpha
    and noise precision beta by MacKay's fixed-point iteration on the SVD of F,
    divided by n, and averaged over classes. As in the paper there is no bias term
    and the features are used as given (not centred or scaled). Works for n < d.

    Args:
        features: Float array (n, d).
        labels: Integer class labels (n,).

    Returns:
        Mean per-sample log evidence; higher means the features fit the labels better.
        Comparable between models on the same dataset only.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1], 20)
        >>> good = np.c_[y, 1 - y] + 0.1 * rng.normal(size=(40, 2))
        >>> bad = rng.normal(size=(40, 2))
        >>> logme(good, y) > logme(bad, y)
        True
    """
    x, y = _features_and_labels(features, labels)
    evidence, _, _ = _logme_per_class(x, y)
    return float(np.mean(evidence) / x.shape[0])


def leep(probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: log expected empirical prediction of the source head on target labels.

    Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020. With source softmax ``theta(x_i)`` over Z source
    classes, the empirical joint is ``P(y, z) = (1/n) sum_{i: y_i = y} theta(x_i)_z``
    (divided by all n, as in the paper), ``P(y | z) = P(y, z) / P(z)``, and
    ``LEEP = (1/n) sum_i log sum_z P(y_i | z) theta(x_i)_z``.

    Args:
        probs: Source-model probabilities (n, Z), rows summing to 1.
        labels: Integer target labels (n,).

    Returns:
        A value <= 0; 0 means the source predictions determine the target labels.

    Example:
        >>> probs = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> leep(probs, np.array([1, 0]))
        0.0
    """
    p = _as_float_array(probs, "probs", 2)
    y = _as_labels(labels, p.shape[0])
    if np.any(p < 0):
        raise ValueError("probs must be non-negative")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs rows must sum to 1 (pass softmax outputs, not logits)")
    codes, _ = _encode(y)
    n = p.shape[0]
    joint = np.zeros((codes.max() + 1, p.shape[1]))
    np.add.at(joint, codes, p)
    joint /= n
    marginal = joint.sum(axis=0)
    # Source classes no sample ever predicts carry zero weight in every EEP sum.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = np.einsum("iz,iz->i", p, conditional[codes])
    return float(np.mean(np.log(eep)))


def nce(source_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target given source labels.

    Tran et al., "Transferability and Hardness of Supervised Classification Tasks",
    ICCV 2019. Z are hard source labels (e.g. the argmax of the ImageNet head), Y the
    target labels; the entropy uses the empirical joint, in nats.

    Args:
        source_labels: Integer source labels (n,), any integer values.
        target_labels: Integer target labels (n,).

    Returns:
        A value in ``[-log C, 0]``; 0 when Y is a function of Z.

    Example:
        >>> nce(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]))
        0.0
    """
    z = _as_labels(source_labels, name="source_labels")
    y = _as_labels(target_labels, z.shape[0], name="target_labels")
    z_codes, _ = _encode(z)
    y_codes, _ = _encode(y)
    joint = np.zeros((z_codes.max() + 1, y_codes.max() + 1))
    np.add.at(joint, (z_codes, y_codes), 1.0)
    joint /= z.shape[0]
    p_z = joint.sum(axis=1, keepdims=True)
    mask = joint > 0
    conditional = joint[mask] / np.broadcast_to(p_z, joint.shape)[mask]
    return float(np.sum(joint[mask] * np.log(conditional)))


def hscore(features: np.ndarray, labels: np.ndarray, *, shrinkage: bool = False) -> float:
    """H-score: how much of the feature covariance the class means explain.

    Bao et al., "An Information-Theoretic Approach to Transferability in Task
    Transfer Learning", ICIP 2019: ``tr(pinv(cov(f)) cov(E[f | y]))``, where
    ``cov(E[f | y])`` is the covariance of each sample's class-mean vector (the
    between-class covariance, weighted by class frequency). Both covariances use
    the 1/n normalisation, so the ratio is unbiased by the choice.

    With ``shrinkage=True`` this is the regularised H-score of Ibrahim et al.
    ("Newer is not always better", ICLR 2023): ``cov(f)`` is replaced by its
    Ledoit-Wolf estimate ``(1 - a) cov(f) + a mu I`` and the between-class
    covariance is scaled by ``(1 - a)``; this tames the pseudo-inverse when d is
    comparable to n.

    Args:
        features: Float array (n, d).
        labels: Integer class labels (n,).
        shrinkage: Use the Ledoit-Wolf regularised estimate.

    Returns:
        The H-score, in ``[0, min(d, C - 1)]``; higher is better. Invariant to any
        invertible linear map of the features (without shrinkage).

    Example:
        >>> hscore(np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1]))
        0.8
    """
    x, y = _features_and_labels(features, labels)
    codes, counts = _encode(y)
    x = x - x.mean(axis=0)
    class_means = np.zeros((counts.shape[0], x.shape[1]))
    np.add.at(class_means, codes, x)
    class_means /= counts[:, None]
    # Weighted by class frequency: the covariance of E[f|y] over the samples.
    between = (class_means.T * counts) @ class_means / x.shape[0]
    if shrinkage:
        estimator = LedoitWolf(assume_centered=True).fit(x)
        cov = estimator.covariance_
        between = (1.0 - estimator.shrinkage_) * between
    else:
        cov = x.T @ x / x.shape[0]
    # pinv's default cutoff keeps null directions (constant features) from exploding.
    return float(np.trace(np.linalg.pinv(cov, hermitian=True) @ between))


# ----------------------------------------------------------------------------
# Cross-validated probes
# ----------------------------------------------------------------------------


def _stratified_folds(labels: np.ndarray, cv: int, seed: int) -> StratifiedKFold:
    """Seeded StratifiedKFold with ``min(cv, smallest class count)`` splits."""
    if cv < 2:
        raise ValueError(f"cv must be at least 2, got {cv}")
    _, counts = _encode(labels)
    if counts.shape[0] < 2:
        raise ValueError("labels: a probe needs at least 2 classes, got 1")
    if counts.min() < 2:
        raise ValueError(
            f"labels: the smallest class has {counts.min()} sample; cross-validated "
            "probes need at least 2 samples in every class"
        )
    return StratifiedKFold(n_splits=int(min(cv, counts.min())), shuffle=True, random_state=seed)


def _cv_accuracies(
    estimator: object, x: np.ndarray, y: np.ndarray, folds: StratifiedKFold
) -> np.ndarray:
    return cross_val_score(estimator, x, y, cv=folds, scoring="accuracy")


def _knn_estimator(labels: np.ndarray, folds: StratifiedKFold, k: int) -> object:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    # k cannot exceed the smallest training fold; StratifiedKFold's test folds hold
    # at most ceil(n_c / n_splits) samples of each class c.
    _, counts = _encode(labels)
    largest_test = int(np.sum(np.ceil(counts / folds.n_splits)))
    k_eff = min(k, labels.shape[0] - largest_test)
    # L2-normalised rows make Euclidean neighbours the cosine neighbours.
    return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=k_eff))


def _linear_estimator(C: float) -> object:
    if not C > 0:
        raise ValueError(f"C must be positive, got {C}")
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))


def probe_report(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    cv: int = 5,
    seed: int = 0,
    k: int = 5,
    C: float = 1.0,
) -> dict[str, object]:
    """Both probes on the same folds, with per-fold accuracies and the chance level.

    Args:
        features: Float array (n, d).
        labels: Integer class labels (n,); every class needs at least 2 samples.
        cv: Maximum number of folds (at least 2).
        seed: Seed of the fold shuffle.
        k: Neighbours of the kNN probe.
        C: Inverse regularisation strength of the linear probe.

    Returns:
        JSON-ready dict: ``knn_accuracy``, ``knn_folds``, ``knn_std``,
        ``linear_accuracy``, ``linear_folds``, ``linear_std`` (population std over
        folds), ``chance`` (majority-class fraction), ``n_splits``, ``n``,
        ``n_classes``.

    Example:
        >>> x = np.r_[np.ones((10, 2)), -np.ones((10, 2))]
        >>> report = probe_report(x, np.repeat([0, 1], 10))
        >>> report["linear_accuracy"], report["chance"]
        (1.0, 0.5)
    """
    x, y = _features_and_labels(features, labels)
    folds = _stratified_folds(y, cv, seed)
    knn = _cv_accuracies(_knn_estimator(y, folds, k), x, y, folds)
    linear = _cv_accuracies(_linear_estimator(C), x, y, folds)
    _, counts = _encode(y)
    return {
        "knn_accuracy": float(np.mean(knn)),
        "knn_folds": [float(a) for a in knn],
        "knn_std": float(np.std(knn)),
        "linear_accuracy": float(np.mean(linear)),
        "linear_folds": [float(a) for a in linear],
        "linear_std": float(np.std(linear)),
        "chance": float(counts.max() / y.shape[0]),
        "n_splits": int(folds.n_splits),
        "n": int(y.shape[0]),
        "n_classes": int(counts.shape[0]),
    }


def _stratified_prefix(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a per-class prefix of a seeded permutation (at least 1 per class).

    The permutation depends only on ``seed``, so smaller fractions are subsets of larger
    ones and a learning curve measures data, not resampling noise.
    """
    rng = np.random.default_rng(seed)
    codes, counts = _encode(labels)
    chosen = []
    for c, n_c in enumerate(counts):
        members = rng.permutation(np.flatnonzero(codes == c))
        chosen.append(members[: min(int(n_c), max(1, int(round(fraction * n_c))))])
    return np.sort(np.concatenate(chosen))


def learning_curve(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0),
    seed: int = 0,
    cv: int = 5,
) -> list[dict[str, float]]:
    """Linear-probe accuracy against training images per class, test folds kept full-size.

    As ``sklearn.model_selection.learning_curve`` does: the data is split into ``cv``
    stratified folds once; in each split the probe trains on growing, nested, class-stratified
    fractions of the training folds and is scored on the whole test fold, so every point is
    measured on the same test images and only the training data grows.

    Args:
        features: Float array (n, d).
        labels: Integer class labels (n,); every class needs at least 2 samples.
        fractions: Fractions of each training fold, in (0, 1].
        seed: Seed of the folds and of the subsets.
        cv: Maximum number of folds.

    Returns:
        One dict per fraction, in the given order: ``fraction``, ``n`` (training samples,
        mean over folds), ``images_per_class`` (``n`` over the number of classes),
        ``accuracy`` (mean over folds) and ``std`` (over folds). A fraction that gives the same
        size as a smaller one (tiny classes) or no measurable probe is left out.

    Example:
        >>> x = np.r_[np.ones((20, 2)), -np.ones((20, 2))]
        >>> [p["images_per_class"] for p in learning_curve(x, np.repeat([0, 1], 20), fractions=(0.5, 1.0))]
        [8.0, 16.0]
    """
    x, y = _features_and_labels(features, labels)
    fractions = list(fractions)
    if not fractions:
        raise ValueError("fractions is empty")
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fractions must lie in (0, 1], got {fraction}")
    folds = _stratified_folds(y, cv, seed)
    n_classes = _encode(y)[1].shape[0]
    scores = np.full((len(fractions), folds.n_splits), np.nan)
    sizes = np.zeros((len(fractions), folds.n_splits))
    for k, (train, test) in enumerate(folds.split(x, y)):
        for i, fraction in enumerate(fractions):
            idx = train[_stratified_prefix(y[train], fraction, seed + k)]
            sizes[i, k] = idx.shape[0]
            if np.unique(y[idx]).shape[0] < 2:
                continue  # a probe needs two classes: this point is not measurable
            model = _linear_estimator(1.0).fit(x[idx], y[idx])
            scores[i, k] = float(np.mean(model.predict(x[test]) == y[test]))
    curve = []
    for i, fraction in enumerate(fractions):
        ok = scores[i][np.isfinite(scores[i])]
        n = float(np.mean(sizes[i]))
        if ok.size == 0 or any(p["n"] == n for p in curve):
            continue  # not measurable, or (tiny data) the same size as a smaller fraction
        curve.append({"fraction": float(fraction), "n": n, "images_per_class": n / n_classes,
                      "accuracy": float(np.mean(ok)), "std": float(np.std(ok))})
    return curve


# ----------------------------------------------------------------------------
# Distribution signals
# ----------------------------------------------------------------------------


def _gaussian_params(mu: object, var: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = _as_float_array(mu, f"mu_{name}", 1)
    v = _as_float_array(var, f"var_{name}", 1)
    if v.shape != m.shape:
        raise ValueError(f"var_{name} has shape {v.shape} but mu_{name} has {m.shape}")
    if np.any(v < 0):
        raise ValueError(f"var_{name} must be non-negative")
    return m, v


def gaussian_kl(
    mu_p: np.ndarray,
    var_p: np.ndarray,
    mu_q: np.ndarray,
    var_q: np.ndarray,
    *,
    eps: float = 1e-5,
) -> np.ndarray:
    """Per-channel ``KL(N(mu_p, var_p) || N(mu_q, var_q))`` for diagonal Gaussians.

    ``0.5 * (log(vq / vp) + (vp + (mu_p - mu_q)^2) / vq - 1)`` with ``eps`` added to
    both variances (BatchNorm's own epsilon, so dead channels stay finite).

    Args:
        mu_p: Means of P, shape (C,).
        var_p: Variances of P, shape (C,).
        mu_q: Means of Q, shape (C,).
        var_q: Variances of Q, shape (C,).
        eps: Added to every variance.

    Returns:
        Non-negative KL divergences in nats, shape (C,).

    Example:
        >>> gaussian_kl(np.zeros(1), np.ones(1), np.ones(1), np.ones(1), eps=0.0)
        array([0.5])
    """
    mp, vp = _gaussian_params(mu_p, var_p, "p")
    mq, vq = _gaussian_params(mu_q, var_q, "q")
    if mp.shape != mq.shape:
        raise ValueError(f"mu_q has shape {mq.shape} but mu_p has {mp.shape}")
    vp = vp + eps
    vq = vq + eps
    return 0.5 * (np.log(vq / vp) + (vp + (mp - mq) ** 2) / vq - 1.0)


def frechet_distance_diag(
    mu1: np.ndarray,
    var1: np.ndarray,
    mu2: np.ndarray,
    var2: np.ndarray,
) -> float:
    """Fréchet (2-Wasserstein squared) distance between diagonal Gaussians.

    Closed form ``||mu1 - mu2||^2 + sum((sqrt(var1) - sqrt(var2))^2)``.

    Example:
        >>> frechet_distance_diag(np.zeros(1), np.ones(1), np.ones(1), np.full(1, 4.0))
        2.0
    """
    m1, v1 = _gaussian_params(mu1, var1, "1")
    m2, v2 = _gaussian_params(mu2, var2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"mu2 has shape {m2.shape} but mu1 has {m1.shape}")
    return float(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # scipy warns on singular input; finiteness is checked by the caller instead.
        warnings.simplefilter("ignore")
        return scipy.linalg.sqrtm(matrix)


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between Gaussians, as in FID.

    ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))``. If ``sqrtm`` of the product
    is not finite (near-singular covariances), ``eps * I`` is added to both
    covariances and it is retried; the real part is kept, since imaginary parts of
    the square root of a product of PSD matrices are round-off. Negative round-off
    in the result is clipped to 0. If both covariances are 1-D they are read as
    diagonal variances and :func:`frechet_distance_diag` is used.

    Args:
        mu1: Mean (d,).
        sigma1: Covariance (d, d), or variances (d,).
        mu2: Mean (d,).
        sigma2: Covariance (d, d), or variances (d,).
        eps: Diagonal offset used only when the plain square root fails.

    Returns:
        The squared 2-Wasserstein distance between the two Gaussians.

    Example:
        >>> frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1))
        2.0
    """
    s1 = _as_float_array(sigma1, "sigma1", (1, 2))
    s2 = _as_float_array(sigma2, "sigma2", (1, 2))
    if s1.ndim == 1 and s2.ndim == 1:
        return frechet_distance_diag(mu1, s1, mu2, s2)
    m1 = _as_float_array(mu1, "mu1", 1)
    m2 = _as_float_array(mu2, "mu2", 1)
    d = m1.shape[0]
    if m2.shape != (d,):
        raise ValueError(f"mu2 has shape {m2.shape} but mu1 has {m1.shape}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape {(d, d)} (or ({d},) for variances), got {s.shape}")
    covmean = _sqrtm(s1 @ s2)
    if not np.all(np.isfinite(covmean)):
        offset = eps * np.eye(d)
        covmean = _sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def softmax_signals(logits: np.ndarray) -> dict[str, float]:
    """Out-of-distribution signals from the ImageNet head's logits.

    * ``max_softmax``: mean maximum softmax probability (Hendrycks & Gimpel, 2017);
      higher = more confident = more ImageNet-like.
    * ``entropy``: mean predictive entropy divided by ``log K``, in [0, 1].
    * ``energy``: mean energy ``-logsumexp(logits)`` (Liu et al., 2020, T = 1);
      lower = more in-distribution.

    Computed with ``log_softmax``/``logsumexp``, so large logits do not overflow.

    Args:
        logits: Float array (n, K), K >= 2.

    Returns:
        Dict with ``max_softmax``, ``entropy`` and ``energy`` as floats.

    Example:
        >>> signals = softmax_signals(np.zeros((2, 4)))  # uniform over K = 4
        >>> {name: round(value, 4) for name, value in signals.items()}
        {'max_softmax': 0.25, 'entropy': 1.0, 'energy': -1.3863}
    """
    z = _as_float_array(logits, "logits", 2)
    n_classes = z.shape[1]
    if n_classes < 2:
        raise ValueError(f"logits needs at least 2 columns, got {n_classes}")
    log_p = scipy.special.log_softmax(z, axis=1)
    p = np.exp(log_p)
    entropy = -np.sum(p * log_p, axis=1) / np.log(n_classes)
    return {
        "max_softmax": float(np.mean(p.max(axis=1))),
        "entropy": float(np.clip(np.mean(entropy), 0.0, 1.0)),
        "energy": float(np.mean(-scipy.special.logsumexp(z, axis=1))),
    }


# ----------------------------------------------------------------------------
# Rank agreement
# ----------------------------------------------------------------------------


def weighted_kendall_tau(scores: np.ndarray, accuracies: np.ndarray) -> float:
    """Weighted Kendall's tau between a metric's scores and measured accuracies.

    The statistic LogME and SFDA report for model selection:
    ``scipy.stats.weightedtau`` with its default hyperbolic weigher ``1 / (r + 1)``
    on the decreasing rank, so swaps among the best models cost more than swaps
    among the worst ones, which matters when only the top model will be used.

    Args:
        scores: Metric value per model (m,), m >= 2.
        accuracies: Measured accuracy per model (m,).

    Returns:
        A value in [-1, 1]; 1 when the scores order the models as the accuracies do.
        NaN if either input is constant.

    Example:
        >>> weighted_kendall_tau(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.5, 0.9]))
        1.0
    """
    s = _as_float_array(scores, "scores", 1)
    a = _as_float_array(accuracies, "accuracies", 1)
    if a.shape != s.shape:
        raise ValueError(f"accuracies has shape {a.shape} but scores has {s.shape}")
    if s.shape[0] < 2:
        raise ValueError("scores needs at least 2 models to rank")
    return float(scipy.stats.weightedtau(s, a).statistic)


def paired_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, n_boot: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """Mean accuracy difference of two strategies scored on the same images, and its standard error.

    ``a[s]`` and ``b[s]`` are the per-image correctness (booleans) of the two strategies under
    seed ``s``, on that seed's reported images in the same order. The standard error comes
    from a two-level bootstrap: seeds are resampled, and within each the images, and the
    difference is recomputed each time. Pairing removes the images both get right or both get
    wrong, so it is smaller than the unpaired ``sqrt(2 p (1 - p) / n)``; and it shrinks with
    more images and with more seeds.

    Args:
        a: Per seed, a boolean array of the first strategy's correct images.
        b: The same for the second strategy, seed by seed, of the same lengths.
        n_boot: Bootstrap resamples.
        seed: Seed of the bootstrap (the same input and seed give the same answer).

    Returns:
        ``(difference, standard_error)``: the mean over seeds of ``acc(a) - acc(b)``.

    Example:
        >>> a = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1] * 10, bool)
        >>> b = a.copy(); b[5:10] = False  # b loses 5 of the 90 images a gets right
        >>> diff, se = paired_difference([a], [b], seed=0)
        >>> round(diff, 3), 0.015 < se < 0.03
        (0.05, True)
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need the same, non-zero number of seeds, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    per_seed, boot = [], []
    for x, y in zip(a, b):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.shape != y.shape or not x.size:
            raise ValueError(f"per-image records must pair up, got {x.shape} and {y.shape}")
        d = x - y
        per_seed.append(d.mean())
        disagree = np.flatnonzero(d)  # only images where they differ move the mean
        counts = rng.multinomial(d.size, np.full(d.size, 1.0 / d.size), size=n_boot)[:, disagree]
        boot.append(counts @ d[disagree] / d.size)
    boot_arr = np.stack(boot, axis=1)  # (n_boot, seeds)
    pick = rng.integers(len(a), size=(n_boot, len(a)))
    means = np.take_along_axis(boot_arr, pick, axis=1).mean(1)
    return float(np.mean(per_seed)), float(means.std(ddof=1))


def weighted_tau_interval(scores: np.ndarray, correct: Sequence[Sequence[np.ndarray]], *, n_boot: int = 1000,
                          seed: int = 0, level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Weighted Kendall tau of ``scores`` against measured accuracies, with a bootstrap interval.

    ``correct[m][s]`` is model ``m``'s per-image record (booleans) under seed ``s``; under one
    seed every model is scored on the same images in the same order, so a resample of images
    (and of seeds) is drawn once and applied to every model: the interval holds the noise of
    the test images, paired across models, not an independent error per model.

    Args:
        scores: The ranking's score per model (m,), m >= 2; higher is better.
        correct: Per model, per seed, a boolean array; the seeds' lengths agree across models.
        n_boot: Bootstrap resamples.
        seed: Seed of the bootstrap.
        level: Coverage of the percentile interval.

    Returns:
        ``(tau, low, high)``: tau on the measured accuracies (the mean over seeds), and the
        interval's ends; ``None`` ends when fewer than half the resamples give a defined tau
        (every model equally accurate in most of them).

    Example:
        >>> good = np.ones(50, bool); bad = good.copy(); bad[:20] = False
        >>> tau, low, high = weighted_tau_interval(np.array([0.9, 0.5]), [[good], [bad]])
        >>> tau, low
        (1.0, 1.0)
    """
    s = _as_float_array(scores, "scores", 1)
    if len(correct) != s.shape[0]:
        raise ValueError(f"correct has {len(correct)} models but scores has {s.shape[0]}")
    if s.shape[0] < 2:
        raise ValueError("scores needs at least 2 models to rank")
    n_seeds = len(correct[0])
    if not n_seeds or any(len(c) != n_seeds for c in correct):
        raise ValueError("every model needs the same, non-zero number of seeds")
    per_seed = []  # (seeds) of (m, n_images) arrays
    for k in range(n_seeds):
        rows = [np.asarray(c[k], dtype=float) for c in correct]
        if len({r.shape for r in rows}) != 1 or not rows[0].size:
            raise ValueError(f"seed {k}: the models' per-image records must pair up, got {[r.shape for r in rows]}")
        per_seed.append(np.stack(rows))
    accuracy = np.mean([x.mean(1) for x in per_seed], axis=0)
    tau = float(scipy.stats.weightedtau(s, accuracy).statistic)
    rng = np.random.default_rng(seed)
    taus = np.empty(n_boot)
    for i in range(n_boot):
        picks = rng.integers(n_seeds, size=n_seeds)
        acc = np.mean([per_seed[k][:, rng.integers(per_seed[k].shape[1], size=per_seed[k].shape[1])].mean(1)
                       for k in picks], axis=0)
        taus[i] = scipy.stats.weightedtau(s, acc).statistic if np.ptp(acc) > 0 else np.nan
    defined = taus[np.isfinite(taus)]
    if defined.size < n_boot / 2:
        return tau, None, None
    alpha = (1 - level) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return tau, float(low), float(high)
