"""Synthetic AU edits of real faces: landmark displacements written from the FACS descriptions,
applied with a piecewise-affine warp (the canvas border pinned), with exact labels and the
exact optical flow from the original to the edited face.

Displacements are in units of the inter-ocular distance (eye centres), y down, x towards the
face's own side for "outward" moves (mirrored for the two halves of the face).
"""

from __future__ import annotations

import numpy as np

from rtatl_sdk.contract import geometry

# (landmark indices, dx outward, dy) in IOD units; "outward" = away from the face's midline.
AU_EDITS: dict[int, list[tuple[tuple[int, ...], float, float]]] = {
    1: [((21, 22), 0.0, -0.12), ((20, 23), 0.0, -0.07), ((19, 24), 0.0, -0.03)],  # inner brows up
    2: [((17, 26), 0.0, -0.12), ((18, 25), 0.0, -0.10), ((19, 24), 0.0, -0.05)],  # outer brows up
    4: [((21, 22), -0.05, 0.08), ((20, 23), -0.03, 0.08), ((17, 18, 19, 24, 25, 26), 0.0, 0.05)],  # lowered, together
    6: [((40, 41, 46, 47), 0.0, -0.035), ((1, 2, 3, 13, 14, 15), 0.0, -0.04), ((31, 35), 0.0, -0.02)],  # cheeks up
    7: [((40, 41, 46, 47), 0.0, -0.045), ((37, 38, 43, 44), 0.0, 0.02)],  # lids tightened
    10: [((50, 51, 52, 61, 62, 63), 0.0, -0.07), ((49, 53), 0.0, -0.05)],  # upper lip up
    12: [((48, 54), 0.09, -0.08), ((49, 53, 59, 55, 60, 64), 0.04, -0.04)],  # corners up and out
    14: [((48, 54), 0.05, 0.0), ((60, 64), 0.04, 0.0)],  # corners pulled in tight (dimpler)
    15: [((48, 54), 0.0, 0.08), ((59, 55, 60, 64), 0.0, 0.04)],  # corners down
    17: [((7, 8, 9), 0.0, -0.05), ((56, 57, 58, 65, 66, 67), 0.0, -0.05), ((55, 59), 0.0, -0.03)],  # chin up
    23: [((48, 54), -0.03, 0.0), ((50, 51, 52), 0.0, 0.02), ((56, 57, 58), 0.0, -0.02)],  # lips tightened
    24: [((61, 62, 63, 50, 51, 52), 0.0, 0.03), ((65, 66, 67, 56, 57, 58), 0.0, -0.03)],  # lips pressed
    # OpenFace's further AUs, from the FACS descriptions in the same form
    5: [((37, 38, 43, 44), 0.0, -0.05), ((36, 39, 42, 45), 0.0, -0.01)],  # upper lids raised
    9: [((31, 32, 33, 34, 35), 0.0, -0.05), ((27, 28, 29, 30), 0.0, -0.02), ((21, 22), 0.0, 0.03)],  # nose wrinkled
    20: [((48, 54), 0.10, 0.01), ((49, 53, 59, 55), 0.05, 0.0), ((60, 64), 0.05, 0.0)],  # corners stretched sideways
    25: [((65, 66, 67), 0.0, 0.05), ((61, 62, 63), 0.0, -0.01)],  # lips parted
    26: [((5, 6, 7, 8, 9, 10, 11), 0.0, 0.10), ((56, 57, 58, 65, 66, 67), 0.0, 0.12), ((55, 59), 0.0, 0.08)],  # jaw dropped
    28: [((61, 62, 63), 0.0, 0.03), ((65, 66, 67), 0.0, -0.03), ((50, 51, 52), 0.0, 0.02), ((56, 57, 58), 0.0, -0.02)],
    45: [((37, 38, 43, 44), 0.0, 0.07)],  # upper lids down onto the lower (a blink)
}


def edit_landmarks(pts: np.ndarray, aus, strength: float = 1.0) -> np.ndarray:
    """Landmarks after the given AUs' displacements (scaled by ``strength``)."""
    pts = np.asarray(pts, np.float64)
    out = pts.copy()
    eyes = geometry.five_points(pts)[:2]
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    mid_x = float(eyes.mean(0)[0])
    for au in aus:
        for idx, dx, dy in AU_EDITS[au]:
            for i in idx:
                side = np.sign(pts[i, 0] - mid_x) or 1.0
                out[i] += strength * iod * np.array([side * dx, dy])
    return out


def _control_points(pts: np.ndarray, size: int) -> np.ndarray:
    """Landmarks plus pinned points: the canvas border every 25 px and a ring around the face
    (its outline scaled 1.3x from the face centre), so a warp stays inside the face."""
    s = size - 1
    ticks = np.linspace(0, s, 9)
    border = [(t, 0) for t in ticks] + [(t, s) for t in ticks] + [(0, t) for t in ticks[1:-1]] + [(s, t) for t in ticks[1:-1]]
    outline = pts[list(range(17)) + list(range(26, 16, -1))]
    centre = pts.mean(0)
    ring = np.clip(centre + 1.3 * (outline - centre), 1, s - 1)
    return np.vstack([pts, ring, np.array(border, np.float64)])


def _triangles(points: np.ndarray, size: int) -> list[tuple[int, int, int]]:
    import cv2

    sub = cv2.Subdiv2D((-1, -1, size + 2, size + 2))
    for p in points:
        sub.insert((float(p[0]), float(p[1])))
    tris = []
    for t in sub.getTriangleList():
        tri = []
        for k in range(3):
            d = np.linalg.norm(points - t[2 * k:2 * k + 2], axis=1)
            if d.min() > 1e-3:
                break
            tri.append(int(d.argmin()))
        if len(tri) == 3 and len(set(tri)) == 3:
            tris.append(tuple(tri))
    return tris


def _dense_map(src: np.ndarray, dst: np.ndarray, tris, size: int) -> np.ndarray:
    """For every pixel of the ``dst`` geometry, its position in the ``src`` geometry (H, W, 2)."""
    import cv2

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.stack([xs, ys], -1)
    label = np.full((size, size), -1, np.int32)
    for k, t in enumerate(tris):
        cv2.fillConvexPoly(label, np.round(dst[list(t)]).astype(np.int32), k)
    for k, t in enumerate(tris):
        mask = label == k
        if not mask.any():
            continue
        m = cv2.getAffineTransform(dst[list(t)].astype(np.float32), src[list(t)].astype(np.float32))
        p = np.stack([xs[mask], ys[mask], np.ones(mask.sum(), np.float32)], 1)
        out[mask] = p @ m.T.astype(np.float32)
    return out


def apply_edit(image: np.ndarray, pts: np.ndarray, aus, strength: float = 1.0):
    """(edited image, edited landmarks, flow (2, H, W) from the original to the edited image)."""
    import cv2

    size = image.shape[0]
    new = edit_landmarks(pts, aus, strength)
    src = _control_points(pts, size)
    dst = src.copy()
    dst[: len(new)] = new  # only the landmarks move; the ring and border stay pinned
    tris = _triangles(src, size)
    inv = _dense_map(src, dst, tris, size)  # edited pixel -> original position
    edited = cv2.remap(image, inv[..., 0], inv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fwd = _dense_map(dst, src, tris, size)  # original pixel -> edited position
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([fwd[..., 0] - xs, fwd[..., 1] - ys])
    return edited, new, flow.astype(np.float32)
