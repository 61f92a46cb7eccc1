"""Classification scores of generated samples: confusion matrix, accuracy and its standard errors.

Pure numpy functions on ``(M,)`` integer label arrays (0-based) or boolean ``correct`` arrays; used by the cryo-ET
evaluation (:mod:`emgan_monai.evaluation.cryoet`), where ``M = n_samples * n_maps``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_with_se", "confusion_matrix"]


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``(n, n)`` int64 counts: row = true class, column = predicted class, of ``(M,)`` 0-based labels."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def accuracy_with_se(correct: np.ndarray, n_maps: int) -> dict[str, float]:
    """Accuracy, its binomial standard error ``sqrt(p (1 - p) / n)``, and the standard error across maps (samples
    of one map are not independent: the per-map accuracies are).

    ``correct`` is a ``(n_samples * n_maps,)`` boolean array, sample ``j`` of map ``i`` at ``j * n_maps + i``.
    Returns ``{"accuracy", "accuracy_se", "accuracy_se_by_map"}``."""
    p = float(correct.mean())
    n = correct.size
    per_map = correct.reshape(-1, n_maps).mean(0) if n % n_maps == 0 else correct
    return {
        "accuracy": p,
        "accuracy_se": float(np.sqrt(p * (1 - p) / n)),
        "accuracy_se_by_map": float(per_map.std(ddof=1) / np.sqrt(per_map.size)) if per_map.size > 1 else 0.0,
    }
