"""The eight facial expressions of the expression head: names, order and how votes become shares.

The order is the model's output order and the order of the CSV / DataFrame columns: py-feat's
seven (``anger, disgust, fear, happiness, sadness, surprise, neutral``), then ``contempt``
(FER+'s eighth class). Training data (crowd votes) and the SDK read the names from here only.
"""

from __future__ import annotations

import numpy as np

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (..., E) logits, computed stably."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def vote_shares(votes: dict[str, float]) -> np.ndarray | None:
    """Crowd votes ``{"neutral": 6, "surprise": 1, "unknown": 2}`` -> (E,) shares over ``EMOTIONS``
    summing to 1 (votes for anything else, such as unknown or not-a-face, are left out); None
    when no vote names an expression."""
    v = np.array([float(votes.get(e, 0.0)) for e in EMOTIONS])
    total = v.sum()
    return v / total if total > 0 else None
