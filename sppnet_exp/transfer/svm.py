"""The linear SVMs of Tables 6-7 (paper section 3.2: "we l2-normalize the features for SVM training", no
augmentation): one-vs-rest linear SVMs (liblinear, L2-regularised hinge loss in the dual — the solver the paper's
[38] and the detection SVMs use), and Caltech101's accuracy, the mean over classes of each class's accuracy.

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

__all__ = ["OVRSVM", "choose_c", "fit_ovr", "l2_normalize", "mean_class_accuracy"]


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
    """One-vs-rest linear SVMs on features ``x`` (N, D) with labels ``y`` (N,) in ``0..num_classes-1``: for class
    k, the images of k are positives and all others negatives. ``tol`` 0.1 is liblinear's default for the dual."""
    y = np.asarray(y)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"fit_ovr: features {x.shape} and labels {y.shape} do not match")
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"fit_ovr: the training set has {len(present)} class(es); one-vs-rest needs two")
    xs = l2_normalize(x) if normalize else np.asarray(x, np.float32)
    W = np.zeros((x.shape[1], num_classes), np.float32)
    b = np.full(num_classes, -np.inf, np.float32)  # a class without training images never wins
    for k in present:
        svm = LinearSVC(C=C, loss="hinge", dual=True, tol=tol, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(xs, (y == k).astype(np.int32))
        W[:, k], b[k] = svm.coef_[0], svm.intercept_[0]
    return OVRSVM(W, b, normalize)


def mean_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """The mean over the classes present in ``y`` of the fraction of their images predicted right (Caltech101's
    measure: every class counts the same, whatever its number of test images)."""
    pred, y = np.asarray(pred), np.asarray(y)
    accs = [float((pred[y == k] == k).mean()) for k in range(num_classes) if (y == k).any()]
    return float(np.mean(accs)) if accs else float("nan")


def choose_c(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0),
    folds: int = 3,
    seed: int = 0,
    **fit: object,
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` with the best mean per-class accuracy over ``folds`` stratified folds of the training set
    (each class's images dealt round-robin after a seeded shuffle); ties go to the smaller C. Returns (C, {C: acc})."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), np.int64)
    for k in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == k))
        fold[members] = np.arange(len(members)) % folds
    scores: dict[float, float] = {}
    for c in grid:
        accs = []
        for f in range(folds):
            held = fold == f
            if len(np.unique(y[~held])) < 2 or not held.any():
                continue
            model = fit_ovr(x[~held], y[~held], num_classes, C=c, seed=seed, **fit)  # type: ignore[arg-type]
            accs.append(mean_class_accuracy(model.predict(x[held]), y[held], num_classes))
        scores[float(c)] = float(np.mean(accs)) if accs else float("nan")
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores
