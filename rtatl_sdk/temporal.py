"""Optional per-person calibration and temporal smoothing of AU probabilities, per track."""

from __future__ import annotations

import numpy as np


class Smoother:
    """Exponential moving average of probabilities per track: p_t = a * x_t + (1 - a) * p_{t-1}."""

    def __init__(self, alpha: float = 0.5):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: dict[int, np.ndarray] = {}

    def __call__(self, track: int, probs: np.ndarray) -> np.ndarray:
        prev = self._state.get(track)
        out = probs if prev is None else self.alpha * probs + (1 - self.alpha) * prev
        self._state[track] = out
        return out


class NeutralBaseline:
    """A per-track neutral baseline b that shifts probabilities: p' = max(0, p - b) / (1 - b).

    The baseline comes from frames the user marks neutral (``add_neutral``) or, when none are
    marked, is learned from the track's lowest-activity frames: the mean of the ``keep``
    frames with the smallest summed probability seen so far (after ``warmup`` frames).
    """

    def __init__(self, keep: int = 10, warmup: int = 10):
        self.keep, self.warmup = keep, warmup
        self._marked: dict[int, list[np.ndarray]] = {}
        self._low: dict[int, list[np.ndarray]] = {}
        self._seen: dict[int, int] = {}

    def add_neutral(self, track: int, probs: np.ndarray) -> None:
        self._marked.setdefault(track, []).append(np.asarray(probs, np.float64))

    def baseline(self, track: int) -> np.ndarray | None:
        if self._marked.get(track):
            return np.mean(self._marked[track], axis=0)
        if self._seen.get(track, 0) >= self.warmup and self._low.get(track):
            return np.mean(self._low[track], axis=0)
        return None

    def __call__(self, track: int, probs: np.ndarray) -> np.ndarray:
        self._seen[track] = self._seen.get(track, 0) + 1
        low = self._low.setdefault(track, [])
        low.append(np.asarray(probs, np.float64))
        low.sort(key=lambda p: float(p.sum()))
        del low[self.keep:]
        b = self.baseline(track)
        if b is None:
            return probs
        return np.clip((probs - b) / np.maximum(1e-6, 1 - b), 0.0, 1.0)
