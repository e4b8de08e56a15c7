"""The linear SVMs of Tables 6-7 (paper section 3.2: "we l2-normalize the features for SVM training", no
augmentation): one-vs-rest linear SVMs (liblinear, L2-regularised hinge loss in the dual — the solver the paper's
[38] and the detection SVMs use), and the two measures: Caltech101's accuracy, the mean over classes of each class's
accuracy, and VOC 2007's mAP, the mean over classes of the 11-point AP of each class's SVM scores (``VOCevalcls.m``).

Labels: ``(N,)`` class indices (one label per image, Caltech101) or ``(N, K)`` multi-hot targets in {1, 0, -1}
(VOC 2007: several classes per image; -1, a class present only through difficult objects, is left out of that
class's training set and of its AP, as the devkit's 0 labels are).

The paper does not give the SVM's C. ``svm.C`` is a number, or ``auto`` (the default): the C of a grid with the best
mean per-class accuracy in a stratified k-fold cross-validation on the training images alone (:func:`choose_c`),
per layer and split — the test images never choose it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from sppnet_exp.utils.average_precision import classification_ap

__all__ = [
    "OVRSVM",
    "choose_c",
    "class_aps",
    "fit_ovr",
    "l2_normalize",
    "mean_average_precision",
    "mean_class_accuracy",
    "score",
]


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit l2 norm (an all-zero row stays zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


@dataclass
class OVRSVM:
    """One linear SVM per class: ``scores(x) = x @ W + b`` (x l2-normalised as in training)."""

    W: np.ndarray  # (D, K) float32
    b: np.ndarray  # (K,) float32
    normalize: bool = True

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N, K) SVM scores of features ``x`` (N, D)."""
        x = l2_normalize(x) if self.normalize else np.asarray(x, np.float32)
        return x @ self.W + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) the class with the highest score."""
        return self.scores(x).argmax(axis=1)


def fit_ovr(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    C: float = 1.0,
    normalize: bool = True,
    tol: float = 0.1,
    max_iter: int = 10000,
    seed: int = 0,
) -> OVRSVM:
    """One-vs-rest linear SVMs on features ``x`` (N, D): for class k, its images are positives and all others
    negatives. ``y``: (N,) labels in ``0..num_classes-1``, or (N, K) targets in {1, 0, -1} (-1: left out of class
    k's SVM). ``tol`` 0.1 is liblinear's default for the dual. A class with no positive (or no negative) image gets
    no SVM: its score is -inf (it never wins)."""
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"fit_ovr: features {x.shape} and labels {y.shape} do not match")
    if y.ndim == 1:
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(f"fit_ovr: the training set has {len(present)} class(es); one-vs-rest needs two")
        tasks = [(int(k), np.ones(len(y), bool), y == k) for k in present]
    else:
        if y.shape[1] != num_classes:
            raise ValueError(f"fit_ovr: targets have {y.shape[1]} classes, expected {num_classes}")
        tasks = [(k, y[:, k] >= 0, y[:, k] > 0) for k in range(num_classes)]
    xs = l2_normalize(x) if normalize else np.asarray(x, np.float32)
    W = np.zeros((x.shape[1], num_classes), np.float32)
    b = np.full(num_classes, -np.inf, np.float32)
    for k, used, positive in tasks:
        labels = positive[used].astype(np.int32)
        if labels.min() == labels.max():
            continue  # no positive or no negative image: nothing to separate
        svm = LinearSVC(C=C, loss="hinge", dual=True, tol=tol, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(xs[used], labels)
        W[:, k], b[k] = svm.coef_[0], svm.intercept_[0]
    return OVRSVM(W, b, normalize)


def mean_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """The mean over the classes present in ``y`` of the fraction of their images predicted right (Caltech101's
    measure: every class counts the same, whatever its number of test images)."""
    pred, y = np.asarray(pred), np.asarray(y)
    accs = [float((pred[y == k] == k).mean()) for k in range(num_classes) if (y == k).any()]
    return float(np.mean(accs)) if accs else float("nan")


def class_aps(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) the VOC07 11-point AP of each class's scores (``scores`` and ``targets`` (N, K), targets in {1, 0, -1};
    an SVM-less class scores -inf); NaN for a class without a positive image."""
    s, t = np.asarray(scores, np.float64), np.asarray(targets)
    return np.array([classification_ap(np.nan_to_num(s[:, k], neginf=-1e30), t[:, k]) for k in range(t.shape[1])])


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """VOC 2007's classification mAP: the mean of :func:`class_aps` over the classes with a positive image."""
    aps = class_aps(scores, targets)
    aps = aps[~np.isnan(aps)]
    return float(aps.mean()) if aps.size else float("nan")


def score(model: OVRSVM, x: np.ndarray, y: np.ndarray) -> float:
    """The measure of the labels' kind, as a fraction: mean per-class accuracy for (N,) labels, mAP for (N, K)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return mean_average_precision(model.scores(x), y)
    return mean_class_accuracy(model.predict(x), y, model.W.shape[1])


def _folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each image: each class's images dealt round-robin after a shuffle (stratified) for (N,) labels; for
    multi-hot targets the images in a shuffled order, dealt the same way."""
    fold = np.zeros(len(y), np.int64)
    groups = [np.arange(len(y))] if y.ndim == 2 else [np.flatnonzero(y == k) for k in np.unique(y)]
    for members in groups:
        members = rng.permutation(members)
        fold[members] = np.arange(len(members)) % folds
    return fold


def choose_c(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0),
    folds: int = 3,
    seed: int = 0,
    **fit: object,
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` with the best :func:`score` over ``folds`` folds of the training set (:func:`_folds`, seeded);
    ties go to the smaller C. Returns (C, {C: score})."""
    y = np.asarray(y)
    fold = _folds(y, folds, np.random.default_rng(seed))
    scores: dict[float, float] = {}
    for c in grid:
        accs = []
        for f in range(folds):
            held = fold == f
            if not held.any() or (y.ndim == 1 and len(np.unique(y[~held])) < 2):
                continue
            model = fit_ovr(x[~held], y[~held], num_classes, C=c, seed=seed, **fit)  # type: ignore[arg-type]
            accs.append(score(model, x[held], y[held]))
        scores[float(c)] = float(np.nanmean(accs)) if accs and not np.isnan(accs).all() else float("nan")
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores
