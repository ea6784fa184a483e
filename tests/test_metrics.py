"""Tests for advisor.metrics: each metric against hand-computed or analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from advisor import metrics
from advisor.metrics import (
    frechet_distance,
    frechet_distance_diag,
    gaussian_kl,
    hscore,
    learning_curve,
    leep,
    logme,
    nce,
    probe_report,
    softmax_signals,
    weighted_kendall_tau,
)


def _blobs(n_per_class: int = 20, n_classes: int = 3, d: int = 8, spread: float = 0.1, seed: int = 0):
    """Well-separated Gaussian clusters: a feature space any probe should solve."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    features = centers[labels] + spread * rng.normal(size=(labels.size, d))
    return features, labels


def _direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Bayesian linear-model log evidence from explicit d x d matrices (slow, obvious)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    return (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((f @ m - y) ** 2)
        - alpha / 2 * m @ m
        - log_det / 2
    )


# ---------------------------------------------------------------------------- LogME


def test_logme_prefers_separable_features():
    features, labels = _blobs()
    random = np.random.default_rng(1).normal(size=features.shape)
    assert logme(features, labels) > logme(random, labels) + 0.5


@pytest.mark.parametrize("n, d", [(30, 5), (6, 10)], ids=["n>d", "n<d"])
def test_logme_matches_direct_evidence_and_is_the_maximum(n, d):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(n, d))
    labels = np.arange(n) % 3
    evidence, alphas, betas = metrics._logme_per_class(features, labels)
    for c in range(3):
        y = (labels == c).astype(float)
        direct = _direct_log_evidence(features, y, alphas[c], betas[c])
        assert evidence[c] == pytest.approx(direct, abs=1e-6)
        # The fixed point must be the evidence maximum over (alpha, beta).
        best = scipy.optimize.minimize(
            lambda log_ab: -_direct_log_evidence(features, y, *np.exp(log_ab)),
            x0=np.zeros(2),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
        )
        assert evidence[c] == pytest.approx(-best.fun, abs=1e-6)
    assert logme(features, labels) == pytest.approx(evidence.mean() / n, abs=1e-12)


def test_logme_uses_unique_labels_not_their_values():
    features, labels = _blobs(n_per_class=10)
    assert logme(features, labels * 7 + 3) == pytest.approx(logme(features, labels), abs=1e-12)


# ---------------------------------------------------------------------------- LEEP / NCE


def test_leep_hand_example():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 0])
    # Joint P(y,z) = (1/3) sum over samples of class y: y0 -> [1/2, 1/6], y1 -> [1/15, 4/15];
    # P(z) = [17/30, 13/30]; P(y|z): y0 -> [15/17, 5/13], y1 -> [2/17, 8/13].
    eep = [
        0.9 * 15 / 17 + 0.1 * 5 / 13,
        0.2 * 2 / 17 + 0.8 * 8 / 13,
        0.6 * 15 / 17 + 0.4 * 5 / 13,
    ]
    assert leep(probs, labels) == pytest.approx(np.mean(np.log(eep)), abs=1e-12)


def test_leep_is_non_positive_and_zero_when_source_determines_target():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(10), size=50)
    assert leep(probs, rng.integers(0, 4, size=50)) <= 0.0
    source = rng.integers(0, 10, size=50)
    one_hot = np.eye(10)[source]
    assert leep(one_hot, source % 4) == pytest.approx(0.0, abs=1e-12)


def test_leep_rejects_logits():
    with pytest.raises(ValueError, match="probs"):
        leep(np.array([[2.0, -1.0], [0.0, 3.0]]), np.array([0, 1]))


def test_nce_hand_example_and_function_case():
    # Z=0 -> Y in {0, 1} equally (entropy log 2, weight 1/2); Z=1 -> Y=0 always.
    assert nce(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0])) == pytest.approx(-0.5 * math.log(2))
    source = np.random.default_rng(4).integers(0, 1000, size=200)
    assert nce(source, source % 5) == pytest.approx(0.0, abs=1e-12)


def test_nce_of_independent_uniform_labels_is_minus_log_c():
    rng = np.random.default_rng(5)
    source = rng.integers(0, 10, size=200_000)
    target = rng.integers(0, 4, size=200_000)
    assert nce(source, target) == pytest.approx(-math.log(4), abs=2e-3)


# ---------------------------------------------------------------------------- H-score


def test_hscore_hand_example():
    # Total variance 5, between-class variance (class means 1 and 5 around 3) is 4.
    features = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert hscore(features, np.array([0, 0, 1, 1])) == pytest.approx(0.8)


def test_hscore_invariant_to_feature_scaling_and_linear_maps():
    features, labels = _blobs(spread=1.0)
    base = hscore(features, labels)
    scaled = features * np.array([1e-3, 1, 10, 2, 5, 0.1, 3, 7])
    mixed = features @ np.random.default_rng(6).normal(size=(8, 8))
    assert hscore(scaled, labels) == pytest.approx(base, rel=1e-6)
    assert hscore(mixed, labels) == pytest.approx(base, rel=1e-6)
    # At most C - 1 discriminative directions exist.
    assert 0.0 < base <= 2.0 + 1e-9


def test_hscore_shrinkage_is_finite_when_d_exceeds_n_and_scale_free():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(20, 100))
    labels = np.arange(20) % 2
    shrunk = hscore(features, labels, shrinkage=True)
    assert np.isfinite(shrunk) and 0.0 <= shrunk < hscore(features, labels)
    assert hscore(1e3 * features, labels, shrinkage=True) == pytest.approx(shrunk, rel=1e-6)


# ---------------------------------------------------------------------------- probes


def test_probes_solve_separable_features_and_hover_at_chance_on_noise():
    features, labels = _blobs()
    report = probe_report(features, labels)
    assert report["linear_accuracy"] == 1.0 and report["knn_accuracy"] == 1.0
    rng = np.random.default_rng(8)
    noise = rng.normal(size=(120, 8))
    noisy = probe_report(noise, np.arange(120) % 2)
    assert abs(noisy["linear_accuracy"] - 0.5) < 0.15
    assert abs(noisy["knn_accuracy"] - 0.5) < 0.15


def test_probe_report_is_consistent_and_deterministic():
    features, labels = _blobs(n_per_class=12, spread=2.0)
    labels[:4] = 1  # unbalanced: chance is the majority fraction
    report = probe_report(features, labels, cv=4, seed=3)
    assert report["chance"] == pytest.approx(16 / 36)
    assert report["n_splits"] == 4 and len(report["linear_folds"]) == 4
    assert report["linear_accuracy"] == pytest.approx(np.mean(report["linear_folds"]))
    assert report["knn_std"] == pytest.approx(np.std(report["knn_folds"]))
    assert probe_report(features, labels, cv=4, seed=3) == report


def test_probes_shrink_folds_to_smallest_class_and_reject_singletons():
    features, labels = _blobs(n_per_class=3, n_classes=2)
    assert probe_report(features, labels, cv=5)["n_splits"] == 3
    labels[0] = 2  # a class with one sample cannot be in both a train and a test fold
    with pytest.raises(ValueError, match="smallest class has 1 sample"):
        probe_report(features, labels)
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_report(features, np.zeros(6, dtype=int))


def test_learning_curve_grows_training_data_on_full_test_folds():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data[:600], digits.target[:600]  # about 60 real handwritten digits per class
    curve = learning_curve(x, y, seed=0, cv=5)
    assert [p["fraction"] for p in curve] == [0.125, 0.25, 0.5, 1.0]
    per_class = [p["images_per_class"] for p in curve]
    assert per_class[-1] == pytest.approx(600 * 4 / 5 / 10)  # the whole training fold: 48 per class
    assert all(1.8 < b / a < 2.2 for a, b in zip(per_class, per_class[1:]))  # doubling
    accs = [p["accuracy"] for p in curve]
    assert accs[-1] > accs[0] + 0.08 and accs == sorted(accs)  # more data, better probe (measured 0.80 -> 0.95)
    # Every point is scored on the same full-size test folds: a multiple of 1/120 per fold.
    assert all(0 <= p["std"] < 0.1 for p in curve)
    small = metrics._stratified_prefix(y, 0.25, 0)
    large = metrics._stratified_prefix(y, 0.5, 0)
    assert set(small) <= set(large)
    assert np.bincount(y[small]).tolist() == [round(0.25 * c) for c in np.bincount(y)]


# ---------------------------------------------------------------------------- pixels


# ---------------------------------------------------------------------------- distributions


def test_gaussian_kl_zero_for_identical_and_analytic_example():
    mu, var = np.array([0.3, -1.0]), np.array([0.5, 2.0])
    np.testing.assert_allclose(gaussian_kl(mu, var, mu, var), 0.0, atol=1e-15)
    # KL(N(0,1) || N(1,2)) = (log 2 + 2/2 - 1) / 2; the reverse is (-log 2 + 3 - 1) / 2.
    one, two = np.zeros(1), np.ones(1)
    assert gaussian_kl(one, two, two, 2 * two, eps=0.0)[0] == pytest.approx(0.5 * math.log(2))
    assert gaussian_kl(two, 2 * two, one, two, eps=0.0)[0] == pytest.approx(0.5 * (2 - math.log(2)))
    assert np.isfinite(gaussian_kl(one, np.zeros(1), two, np.zeros(1))).all()  # dead channels


def test_frechet_distance_zero_analytic_and_diagonal_forms():
    rng = np.random.default_rng(10)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    mu = rng.normal(size=5)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s = 2 and 5.
    one_d = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[25.0]]))
    assert one_d == pytest.approx(9.0 + 9.0)
    v1, v2 = rng.uniform(0.1, 2, size=5), rng.uniform(0.1, 2, size=5)
    diag = frechet_distance_diag(mu, v1, -mu, v2)
    assert frechet_distance(mu, np.diag(v1), -mu, np.diag(v2)) == pytest.approx(diag, rel=1e-8)
    assert frechet_distance(mu, v1, -mu, v2) == diag


def test_frechet_distance_handles_singular_covariances():
    rng = np.random.default_rng(11)
    low_rank = rng.normal(size=(6, 2))
    singular = low_rank @ low_rank.T  # rank 2 of 6
    value = frechet_distance(np.zeros(6), singular, np.ones(6), singular)
    assert value == pytest.approx(6.0, abs=1e-4)


def test_softmax_signals_hand_examples():
    uniform = softmax_signals(np.zeros((3, 1000)))
    assert uniform["max_softmax"] == pytest.approx(1e-3)
    assert uniform["entropy"] == pytest.approx(1.0)
    assert uniform["energy"] == pytest.approx(-math.log(1000))
    # Logits (0, log 3): softmax (1/4, 3/4).
    two = softmax_signals(np.array([[0.0, math.log(3)]]))
    assert two["max_softmax"] == pytest.approx(0.75)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    assert two["entropy"] == pytest.approx(entropy)
    assert two["energy"] == pytest.approx(-math.log(4))
    # Huge logits neither overflow nor produce NaN.
    sharp = softmax_signals(np.array([[1e4, 0.0, 0.0]]))
    assert sharp == pytest.approx({"max_softmax": 1.0, "entropy": 0.0, "energy": -1e4})


# ---------------------------------------------------------------------------- rank agreement


def test_weighted_kendall_tau_extremes_and_scipy():
    scores = np.array([0.1, 0.5, 0.2, 0.9, 0.7])
    assert weighted_kendall_tau(scores, scores * 2 + 1) == pytest.approx(1.0)
    assert weighted_kendall_tau(scores, -scores) == pytest.approx(-1.0)
    acc = np.array([0.3, 0.6, 0.1, 0.8, 0.9])
    expected = scipy.stats.weightedtau(scores, acc).statistic
    assert weighted_kendall_tau(scores, acc) == pytest.approx(expected)


# ---------------------------------------------------------------------------- validation

_F, _Y = _blobs(n_per_class=4, n_classes=2)
_NAN_F = _F.copy()
_NAN_F[0, 0] = np.nan


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: logme(_F, _Y[:-1]), "labels"),
        (lambda: logme(_NAN_F, _Y), "features"),
        (lambda: hscore(_F[:, 0], _Y), "features"),
        (lambda: probe_report(np.empty((0, 3)), np.empty(0, dtype=int)), "features"),
        (lambda: probe_report(_F, _Y.astype(float)), "labels"),
        (lambda: leep(np.full((3, 2), 0.5), np.array([0, 1])), "labels"),
        (lambda: nce(np.array([0, 1]), np.array([0, 1, 1])), "target_labels"),
        (lambda: gaussian_kl(np.zeros(2), np.ones(3), np.zeros(2), np.ones(2)), "var_p"),
        (lambda: frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "sigma1"),
        (lambda: softmax_signals(np.array([[np.nan, 0.0]])), "logits"),
        (lambda: weighted_kendall_tau(np.arange(3.0), np.arange(4.0)), "accuracies"),
        (lambda: learning_curve(_F, _Y, fractions=(0.0, 1.0)), "fractions"),
    ],
)
def test_invalid_inputs_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
