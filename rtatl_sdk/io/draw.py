"""Drawing helpers for annotated outputs (boxes, landmarks, AU centres, labels)."""

from __future__ import annotations

import numpy as np

from ..contract import geometry
from ..contract.au import AU_NAMES, au_label

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


def draw_au_panel(img: np.ndarray, face, active_only: bool = True, max_lines: int = 8, names: bool = True) -> np.ndarray:
    """A legible label beside the face's box: its number and top expression (with the expression
    head), then one line per AU (present ones by
    default, strongest first) with the AU's name and a probability bar; AUs whose region is
    outside the frame are listed with '?'; ``names=False`` leaves the AU names out (crowded frames).
    Text scales with the image (readable at 640x360)."""
    import cv2

    h, w = img.shape[:2]
    scale = max(0.36, min(1.0, h / 900))
    thick = 1 if scale < 0.7 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    items = sorted(((n, r) for n, r in face.aus.items() if r.present or (not active_only and r.present is not None)),
                   key=lambda nr: -nr[1].probability)[:max_lines]
    unseen = [n for n, r in face.aus.items() if r.present is None]
    who = face.track_id if face.track_id is not None else face.index
    top = f"  {face.emotion} {face.emotions[face.emotion]:.2f}" if getattr(face, "emotion", None) else ""
    lines = [(f"#{who}{top}" + ("" if items else "  no AU present"), None)]
    lines += [(f"{n} {AU_NAMES.get(int(n[2:]), '')}" if names else n, r.probability) for n, r in items]
    if unseen:
        lines.append((" ".join(n[2:] for n in unseen) + " ?", None))
    line_h = int(round(26 * scale)) + 2
    bar_w = int(round(70 * scale))
    text_w = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t, _ in lines)
    panel_w, panel_h = text_w + bar_w + 12, line_h * len(lines) + 6
    x = int(face.box.x + face.box.w) + 4
    if x + panel_w > w:  # no room on the right: on the left, else inside the frame's right edge
        x = int(face.box.x) - panel_w - 4 if face.box.x - panel_w - 4 >= 0 else max(0, w - panel_w)
    y = int(min(max(0, face.box.y), max(0, h - panel_h)))
    roi = img[y:y + panel_h, x:x + panel_w]
    roi[:] = (roi * 0.35).astype(img.dtype)  # a dark, see-through backing
    for k, (text, prob) in enumerate(lines):
        base = y + 4 + line_h * (k + 1) - int(line_h * 0.3)
        cv2.putText(img, text, (x + 4, base), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        if prob is not None:
            bx, by = x + 8 + text_w, base - int(line_h * 0.55)
            cv2.rectangle(img, (bx, by), (bx + bar_w, by + int(line_h * 0.6)), (200, 200, 200), 1)
            cv2.rectangle(img, (bx, by), (bx + int(bar_w * prob), by + int(line_h * 0.6)), (0, 140, 255), -1)
    return img


def annotate(image: np.ndarray, faces, active_only: bool = True, copy: bool = True, landmarks: bool = True,
             pose: bool = True) -> np.ndarray:
    """An image (BGR) with each face's box, a panel naming its AUs with probability bars (the
    present ones by default, every AU with ``active_only=False``; AUs whose region is outside the
    frame get a '?'), its landmarks (``landmarks``) and its head axes and gaze rays (``pose``).
    ``faces`` are the results of ``AUDetector.detect`` (or of a video frame)."""
    import cv2

    img = image.copy() if copy else image
    thick = max(1, int(round(max(img.shape[:2]) / 500)))
    for f in faces:
        cv2.rectangle(img, (int(f.box.x), int(f.box.y)), (int(f.box.x + f.box.w), int(f.box.y + f.box.h)),
                      (0, 200, 255), thick)
        if landmarks:
            draw_points(img, f.landmarks, radius=1)
        if pose and (f.pose is not None or f.gaze is not None):
            draw_pose(img, f)
        draw_au_panel(img, f, active_only, names=len(faces) <= 2)  # more faces: short labels, less overlap
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
