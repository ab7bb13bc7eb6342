"""Drawing helpers for annotated outputs (boxes, landmarks, AU centres, labels)."""

from __future__ import annotations

import numpy as np

from . import geometry
from .au import au_label

_PALETTE = [(255, 99, 71), (60, 179, 113), (30, 144, 255), (238, 130, 238), (255, 215, 0),
            (0, 206, 209), (255, 140, 0), (147, 112, 219), (50, 205, 50), (220, 20, 60),
            (70, 130, 180), (210, 105, 30), (128, 128, 0), (0, 128, 128), (199, 21, 133)]


def draw_points(img: np.ndarray, pts: np.ndarray, colour=(0, 255, 0), radius: int = 1) -> np.ndarray:
    import cv2

    for x, y in np.asarray(pts)[:, :2]:
        cv2.circle(img, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)
    return img


def draw_au_centres(img: np.ndarray, centres: np.ndarray, aus, roi: int = geometry.ROI_SIZE,
                    boxes: bool = False) -> np.ndarray:
    """Draw each AU's two centres (and optionally their RoI boxes) with the AU's label."""
    import cv2

    for i, au in enumerate(aus):
        colour = _PALETTE[i % len(_PALETTE)]
        for j in (2 * i, 2 * i + 1):
            x, y = centres[j]
            cv2.circle(img, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
            if boxes:
                x1, y1, x2, y2 = geometry.roi_boxes(centres[j], roi)
                cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, 1)
        x, y = centres[2 * i]
        cv2.putText(img, au_label(au)[2:], (int(x) - 6, int(y) - 4), cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1, cv2.LINE_AA)
    return img


def draw_box(img: np.ndarray, x: float, y: float, w: float, h: float, text: str = "", colour=(0, 200, 255)) -> np.ndarray:
    import cv2

    p1, p2 = (int(x), int(y)), (int(x + w), int(y + h))
    thick = max(1, int(round(max(img.shape[:2]) / 500)))
    cv2.rectangle(img, p1, p2, colour, thick)
    for k, line in enumerate(text.splitlines()):
        cv2.putText(img, line, (p1[0], p2[1] + 14 * (k + 1) * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, colour, thick, cv2.LINE_AA)
    return img


def annotate(image: np.ndarray, faces, active_only: bool = True, copy: bool = True) -> np.ndarray:
    """An image (BGR) with each face's box, landmarks and AUs drawn: the present AUs by default,
    every AU with ``active_only=False``; AUs whose region is outside the frame get a '?'.
    ``faces`` are the results of ``AUDetector.detect`` (or of a video frame)."""
    img = image.copy() if copy else image
    for f in faces:
        shown = [(n, r) for n, r in f.aus.items() if r.present or not active_only]
        unseen = [n[2:] + "?" for n, r in f.aus.items() if r.present is None]
        who = f.track_id if f.track_id is not None else f.index
        label = f"#{who} " + " ".join([n[2:] for n, _ in shown] + unseen)
        draw_box(img, f.box.x, f.box.y, f.box.w, f.box.h, label)
        draw_points(img, f.landmarks, radius=1)
    return img


def au_heatmap(series, aus: list[str], path, title: str = "") -> None:
    """PNG of AU probabilities over time as a heat map (one row per AU, one column per frame);
    ``series`` is [(timestamp, probabilities or None when no face)], gaps stay blank."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    ts = np.array([t for t, _ in series], np.float64)
    grid = np.full((len(aus), len(series)), np.nan)
    for k, (_, p) in enumerate(series):
        if p is not None:
            grid[:, k] = p
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(aus) + 1.2))
    extent = (ts[0], ts[-1] if len(ts) > 1 else ts[0] + 1, len(aus) - 0.5, -0.5)
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1, extent=extent)
    ax.set_yticks(range(len(aus)), aus)
    ax.set(xlabel="time (s)", title=title)
    fig.colorbar(im, ax=ax, label="probability", fraction=0.03, pad=0.01)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
