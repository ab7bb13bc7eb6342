"""Optional per-person calibration and temporal smoothing of AU probabilities, per track."""

from __future__ import annotations

import numpy as np

from ..options import ReuseConfig  # the settings live with the other options


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


def _thumbnail(crop: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return cv2.resize(grey, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)


class KeyframeReuse:
    """Per track: the AU model runs on a face only when it has changed since the track's last
    inference (``ReuseConfig``); otherwise that inference's probabilities are reused."""

    def __init__(self, config: ReuseConfig):
        self.config = config
        self._keys: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, int]] = {}
        self.seen = 0  #: faces asked for
        self.reused = 0  #: of those, answered from a keyframe

    def _unchanged(self, track: int, pts: np.ndarray, thumb: np.ndarray) -> bool:
        key = self._keys.get(track)
        if key is None or key[3] >= self.config.max_age:
            return False
        k_pts, k_thumb = key[0], key[1]
        return (float(np.abs(pts - k_pts).max()) <= self.config.max_shift
                and float(np.abs(thumb - k_thumb).mean()) <= self.config.max_pixel)

    def __call__(self, faces, tracks: list[int], infer) -> list[np.ndarray]:
        """Probabilities per face; ``infer(faces) -> (n, AUs)`` runs the AU model on those that changed."""
        sig = [(f.crop_landmarks(), _thumbnail(f.crop())) for f in faces]
        need = [i for i, (t, (pts, th)) in enumerate(zip(tracks, sig)) if not self._unchanged(t, pts, th)]
        fresh = infer([faces[i] for i in need]) if need else []
        out: list[np.ndarray] = [None] * len(faces)  # type: ignore[list-item]
        keys = {}
        for k, i in enumerate(need):
            out[i] = fresh[k]
            keys[tracks[i]] = (*sig[i], fresh[k], 0)
        for i, t in enumerate(tracks):
            if out[i] is None:
                pts, thumb, probs, age = self._keys[t]
                out[i] = probs
                keys[t] = (pts, thumb, probs, age + 1)
        self._keys = keys  # tracks absent from this frame lose their keyframe
        self.seen += len(faces)
        self.reused += len(faces) - len(need)
        return out
