"""Drawing helpers for annotated outputs (boxes, landmarks, AU centres, labels)."""

from __future__ import annotations

import numpy as np

from ..contract import geometry
from ..contract.au import au_label

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


def draw_pose(img: np.ndarray, face, length: float | None = None) -> np.ndarray:
    """The head's axes from the nose tip (x red, y green, z blue: the face model's right, down and
    out of the face) and each eye's gaze ray (yellow), drawn as their image-plane directions."""
    import cv2

    from ..contract import landmarks as lm

    pts = np.asarray(face.landmarks, np.float64)
    size = length or 0.6 * max(face.box.w, face.box.h)
    thick = max(1, int(round(max(img.shape[:2]) / 600)))

    def seg(a, b, colour, arrow=True):
        a, b = tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b)
        if arrow:
            cv2.arrowedLine(img, a, b, colour, thick, cv2.LINE_AA, tipLength=0.15)
        else:
            cv2.line(img, a, b, colour, thick, cv2.LINE_AA)

    if face.pose is not None:
        rot = rotation_matrix(face.pose.rx, face.pose.ry, face.pose.rz)
        nose = pts[lm.NOSE_TIP]
        for axis, colour in ((0, (0, 0, 255)), (1, (0, 200, 0)), (2, (255, 0, 0))):
            seg(nose, nose + rot[:2, axis] * size * (0.5 if axis < 2 else -0.5), colour)  # z: out of the face
    if face.gaze is not None:
        for eye, g in ((lm.RIGHT_EYE, face.gaze.eye0), (lm.LEFT_EYE, face.gaze.eye1)):
            start = pts[list(eye)].mean(0)
            seg(start, start + np.asarray(g[:2]) * size, (0, 220, 255), arrow=False)
    return img


def rotation_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """R = Rx(rx) Ry(ry) Rz(rz) (OpenFace's pose_Rx/Ry/Rz)."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))


def annotate(image: np.ndarray, faces, active_only: bool = True, copy: bool = True, landmarks: bool = True,
             pose: bool = True) -> np.ndarray:
    """An image (BGR) with each face's box, landmarks and AUs drawn: the present AUs by default,
    every AU with ``active_only=False``; AUs whose region is outside the frame get a '?'; with
    ``pose`` (default) the head's axes and the gaze rays where the face has them.
    ``faces`` are the results of ``AUDetector.detect`` (or of a video frame)."""
    img = image.copy() if copy else image
    for f in faces:
        shown = [(n, r) for n, r in f.aus.items() if r.present or not active_only]
        unseen = [n[2:] + "?" for n, r in f.aus.items() if r.present is None]
        who = f.track_id if f.track_id is not None else f.index
        label = f"#{who} " + " ".join([n[2:] for n, _ in shown] + unseen)
        draw_box(img, f.box.x, f.box.y, f.box.w, f.box.h, label)
        if landmarks:
            draw_points(img, f.landmarks, radius=1)
        if pose and (f.pose is not None or f.gaze is not None):
            draw_pose(img, f)
    return img


def au_heatmap(series, aus: list[str], path, title: str = "") -> None:
    """PNG of AU probabilities over time as a heat map (one row per AU, one column per frame), and
    under it, when the faces have them, head pose (pitch, yaw, roll) and gaze angle curves in
    degrees. ``series`` is [(timestamp, probabilities or None when no face[, (rx, ry, rz) or None,
    (gaze_x, gaze_y) or None])]; gaps stay blank."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    ts = np.array([item[0] for item in series], np.float64)
    grid = np.full((len(aus), len(series)), np.nan)
    for k, item in enumerate(series):
        if item[1] is not None:
            grid[:, k] = item[1]
    curves = _angle_curves(series)
    rows = 2 if curves else 1
    heights = [0.3 * len(aus) + 1.2] + ([2.2] if curves else [])
    fig, axes = plt.subplots(rows, 1, figsize=(10, sum(heights)), height_ratios=heights, squeeze=False, sharex=True,
                             layout="constrained")
    ax = axes[0, 0]
    extent = (ts[0], ts[-1] if len(ts) > 1 else ts[0] + 1, len(aus) - 0.5, -0.5)
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="magma", vmin=0, vmax=1, extent=extent)
    ax.set_yticks(range(len(aus)), aus)
    ax.set(xlabel="" if curves else "time (s)", title=title)
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="probability", fraction=0.03, pad=0.01)
    if curves:
        low = axes[1, 0]
        for name, values in curves.items():
            low.plot(ts, values, label=name, lw=1)
        low.set(xlabel="time (s)", ylabel="degrees")
        low.legend(loc="upper right", fontsize=7, ncol=5)
        low.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _angle_curves(series) -> dict[str, np.ndarray]:
    """{name: degrees per frame (NaN where missing)} of pose and gaze, or {} when no frame has them."""
    names = ("pitch", "yaw", "roll", "gaze x", "gaze y")
    out = np.full((len(names), len(series)), np.nan)
    for k, item in enumerate(series):
        if len(item) > 2 and item[2] is not None:
            out[:3, k] = np.degrees(item[2])
        if len(item) > 3 and item[3] is not None:
            out[3:, k] = np.degrees(item[3])
    if np.isnan(out).all():
        return {}
    return dict(zip(names, out))
