"""Face geometry shared by training, export and the SDK: alignment template, crops, AU centres.

All functions are plain numpy (OpenCV only to warp pixels). Coordinates are (x, y) in pixels,
y grows downward, pixel centres at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import landmarks as lm
from .au import AU_NAMES, au_label

#: Side of the aligned face canvas (paper sec. 4.2).
ALIGNED_SIZE = 200
#: Side of the network input: random crop (training) or centre crop (testing) of the canvas.
CROP_SIZE = 192
#: Side of the square region cropped around each AU centre (paper sec. 4.2).
ROI_SIZE = 48
#: Offset of the centre crop inside the aligned canvas.
CENTRE_CROP_OFFSET = (ALIGNED_SIZE - CROP_SIZE) // 2
#: Fill colour (BGR) of canvas pixels that fall outside the source image.
BORDER_VALUE = (128, 128, 128)


def _template() -> np.ndarray:
    """Five-point template on the 200x200 canvas.

    Shape: the ArcFace five-point template (eye centres, nose tip, mouth corners). Placement:
    like JAA-Net, the box of the five points is centred on the canvas and its larger side is
    1/2.9 of the canvas, which keeps the brows, the whole chin and both cheeks inside the crop
    (the ArcFace crop cuts the forehead and chin).
    """
    arcface = np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
         [41.5493, 92.3655], [70.7299, 92.2041]]
    )
    lo, hi = arcface.min(0), arcface.max(0)
    scale = ALIGNED_SIZE / (2.9 * float((hi - lo).max()))
    return (arcface - (lo + hi) / 2) * scale + ALIGNED_SIZE / 2


#: Template positions (200x200 canvas) of: right-eye centre (image left), left-eye centre,
#: nose tip, image-left mouth corner, image-right mouth corner.
TEMPLATE_5: np.ndarray = _template()
TEMPLATE_5.setflags(write=False)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The five alignment points of a 68-point face: eye centres, nose tip, mouth corners."""
    pts = lm.check_landmarks(landmarks68)
    return np.stack(
        [
            pts[list(lm.RIGHT_EYE)].mean(0),
            pts[list(lm.LEFT_EYE)].mean(0),
            pts[lm.NOSE_TIP],
            pts[lm.MOUTH_RIGHT],
            pts[lm.MOUTH_LEFT],
        ]
    )


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama (1991), without reflection. Returns the 2x3 matrix M with ``dst ~ M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InputError("points", f"need matching (K>=2, 2) arrays, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float(w @ (s0**2).sum(1))
    if var_s <= 1e-12:
        raise InputError("points", "source points are all at one place")
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to ``(..., 2)`` points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


#: Weights of the five points in the alignment fit. The mouth corners move most with
#: expression (a smile widens them by ~15 % of the mouth width), so they weigh least: the
#: face's scale and position then follow the eyes and nose, not the AUs being measured.
ALIGN_WEIGHTS = np.array([2.0, 2.0, 1.0, 0.5, 0.5])
ALIGN_WEIGHTS.setflags(write=False)


def alignment_matrix(landmarks68: np.ndarray) -> np.ndarray:
    """The 2x3 similarity taking image pixels to the 200x200 aligned canvas."""
    return similarity_transform(five_points(landmarks68), TEMPLATE_5, ALIGN_WEIGHTS)


@dataclass(frozen=True)
class AlignedFace:
    """A face warped to the 200x200 template canvas."""

    image: np.ndarray  #: (200, 200, C) uint8, same channel order as the input
    landmarks: np.ndarray  #: (68, 2) landmarks on the canvas
    matrix: np.ndarray  #: 2x3, image pixels -> canvas pixels


def warp_to_canvas(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp an image with a 2x3 matrix onto the 200x200 canvas (bilinear, grey border)."""
    import cv2

    border = BORDER_VALUE if image.ndim == 3 else BORDER_VALUE[0]
    return cv2.warpAffine(
        image, np.asarray(matrix, dtype=np.float64), (ALIGNED_SIZE, ALIGNED_SIZE),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border,
    )


def align_face(image: np.ndarray, landmarks68: np.ndarray, matrix: np.ndarray | None = None) -> AlignedFace:
    """Align a face: similarity from its five points to the template, warped to 200x200.

    ``matrix`` reuses a transform (the flow targets align frame t+3 with frame t's transform).
    """
    m = alignment_matrix(landmarks68) if matrix is None else np.asarray(matrix, dtype=np.float64)
    return AlignedFace(warp_to_canvas(image, m), apply_transform(m, landmarks68), m)


def centre_crop(canvas: np.ndarray) -> np.ndarray:
    """The 192x192 test-time centre crop of a 200x200 canvas."""
    o = CENTRE_CROP_OFFSET
    return canvas[o:o + CROP_SIZE, o:o + CROP_SIZE]


# --- AU centres -------------------------------------------------------------------------
# Two centres per AU (ROI-Net/EAC-Net pairs, JAA-Net for DISFA AU9/25/26; facts/datasets.md
# sec. 1b-1c). Each rule: (landmark a, landmark b, vertical offset in units of the scale s),
# s = horizontal distance between the inner eye corners (points 39 and 42). Negative = up.
# AU5, AU20, AU28 and AU45 (OpenFace's set) are not in those references; this project extends
# them with the region each AU moves, in the same form: AU5 and AU45 on the eyelids (the
# references' AU7 place, AU45 a sixth of s lower: the closed lid's line), AU20 on the lip
# corners (as AU12/14/15), AU28 on the lip centres (as AU23/24/25).
AU_CENTRE_RULES: dict[int, tuple[int, int, float]] = {
    1: (21, 22, -1 / 2),  # 1/2 s above the inner brow ends
    2: (18, 25, -1 / 3),  # 1/3 s above the outer brow points
    4: (19, 24, +1 / 3),  # 1/3 s below the brow middles
    5: (38, 43, 0.0),  # upper eyelids (extension, as AU7)
    6: (41, 46, +1.0),  # 1 s below the lower eyelids
    7: (38, 43, 0.0),  # upper eyelids
    9: (32, 34, -1 / 2),  # 1/2 s above the nostrils (DISFA, JAA-Net)
    10: (61, 63, 0.0),  # inner upper lip
    12: (48, 54, 0.0),  # lip corners
    14: (48, 54, 0.0),
    15: (48, 54, 0.0),
    17: (56, 58, +1 / 2),  # 1/2 s below the lower lip
    20: (48, 54, 0.0),  # lip corners (extension, as AU12)
    23: (51, 57, 0.0),  # lip centre, top and bottom
    24: (51, 57, 0.0),
    25: (51, 57, 0.0),
    26: (56, 58, +1 / 2),
    28: (51, 57, 0.0),  # lip centres (extension, as AU23)
    45: (38, 43, +1 / 6),  # the eyelids' meeting line (extension)
}
assert set(AU_CENTRE_RULES) == set(AU_NAMES)


def centre_scale(landmarks68: np.ndarray) -> float:
    """The AU-centre scale s: horizontal distance between inner eye corners 39 and 42."""
    pts = np.asarray(landmarks68, dtype=np.float64)
    return float(abs(pts[lm.INNER_EYE_LEFT, 0] - pts[lm.INNER_EYE_RIGHT, 0]))


def au_centres(landmarks68: np.ndarray, aus: tuple[int, ...] | list[int]) -> np.ndarray:
    """The ``(2N, 2)`` AU centres, two consecutive rows per AU, in the landmarks' pixels.

    Use landmarks of the aligned face (eyes level), as the rules assume an upright face.
    """
    pts = lm.check_landmarks(landmarks68)
    s = centre_scale(pts)
    out = np.empty((2 * len(aus), 2))
    for i, au in enumerate(aus):
        if au not in AU_CENTRE_RULES:
            raise InputError("aus", f"no centre rule for {au_label(au)}")
        a, b, dy = AU_CENTRE_RULES[au]
        out[2 * i] = pts[a] + (0.0, dy * s)
        out[2 * i + 1] = pts[b] + (0.0, dy * s)
    return out


def centre_flip_permutation(aus: tuple[int, ...] | list[int]) -> np.ndarray:
    """Row permutation of the ``(2N, 2)`` centres under a horizontal flip.

    A left/right pair (e.g. 48/54) swaps; a pair on the midline (51/57, top/bottom) keeps its
    order. ``au_centres(flip_landmarks(L)) == flip_points(au_centres(L))[perm]``.
    """
    perm = np.arange(2 * len(aus))
    for i, au in enumerate(aus):
        a, b, _ = AU_CENTRE_RULES[au]
        if lm.FLIP_PERMUTATION[a] == b:
            perm[2 * i], perm[2 * i + 1] = 2 * i + 1, 2 * i
    return perm


def flip_points(points: np.ndarray, width: float) -> np.ndarray:
    """Mirror x of points in an image of ``width`` pixels (no re-ordering)."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def flip_centres(centres: np.ndarray, aus: tuple[int, ...] | list[int], width: float) -> np.ndarray:
    """Centres of the horizontally flipped image, re-ordered so each row keeps its meaning."""
    return flip_points(centres, width)[..., centre_flip_permutation(aus), :]


def crop_points(points: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """Points in a crop whose top-left corner is at ``offset = (x0, y0)``."""
    return np.asarray(points, dtype=np.float64) - np.asarray(offset, dtype=np.float64)


def roi_boxes(centres: np.ndarray, size: int = ROI_SIZE) -> np.ndarray:
    """``(..., 4)`` boxes ``x1, y1, x2, y2`` of side ``size`` centred on each centre."""
    c = np.asarray(centres, dtype=np.float64)
    h = size / 2.0
    return np.concatenate([c - h, c + h], axis=-1)


def inside_image(points: np.ndarray, image_shape) -> np.ndarray:
    """(...,) bool: whether each (x, y) point lies inside an image of ``image_shape`` (h, w, ...)."""
    p = np.asarray(points)
    h, w = image_shape[:2]
    return (p[..., 0] >= 0) & (p[..., 0] < w) & (p[..., 1] >= 0) & (p[..., 1] < h)


def centres_in_image(landmarks68: np.ndarray, aus, image_shape) -> np.ndarray:
    """(N,) bool: whether each AU has at least one of its two centres inside the image.

    ``landmarks68`` are the face's image-pixel landmarks; the centres follow the same rules as
    on the aligned crop (``au_centres``), so an AU whose region lies wholly outside the frame
    (brows cut by the top edge, say) is known to be unseen."""
    c = au_centres(np.asarray(landmarks68, np.float64), aus).reshape(-1, 2, 2)
    return inside_image(c, image_shape).any(axis=1)
