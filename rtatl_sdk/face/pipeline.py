"""Image -> faces: detector boxes, 478 landmarks per face, 68 points, aligned 200x200 crop."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .. import geometry, landmarks
from .detector import FaceBox, RetinaFaceDetector
from .landmarker import FaceLandmarker

log = logging.getLogger(__name__)


@dataclass
class Face:
    """One face of one image, in image pixels unless said otherwise."""

    box: FaceBox
    mesh: np.ndarray  #: (478, 3) MediaPipe points
    landmarks: np.ndarray  #: (68, 2)
    aligned: geometry.AlignedFace  #: 200x200 canvas, its landmarks and the transform
    blendshapes: dict[str, float] | None = None
    track_id: int | None = None

    def crop(self) -> np.ndarray:
        """The 192x192 centre crop the AU model sees (BGR)."""
        return geometry.centre_crop(self.aligned.image)

    def crop_landmarks(self) -> np.ndarray:
        """The 68 landmarks in the 192x192 crop's pixels."""
        o = geometry.CENTRE_CROP_OFFSET
        return geometry.crop_points(self.aligned.landmarks, (o, o))

    def au_centres(self, aus) -> np.ndarray:
        """The (2N, 2) AU centres in the 192x192 crop's pixels."""
        return geometry.au_centres(self.crop_landmarks(), aus)


class FacePipeline:
    """``process(bgr) -> list[Face]``; faces sorted left to right."""

    def __init__(self, detector: RetinaFaceDetector | None = None, landmarker: FaceLandmarker | None = None,
                 blendshapes: bool = False, detector_path=None, landmarker_path=None):
        self.detector = detector or RetinaFaceDetector(detector_path)
        self.landmarker = landmarker or FaceLandmarker(landmarker_path, blendshapes=blendshapes)

    def face_in_box(self, bgr: np.ndarray, box: FaceBox) -> Face | None:
        """The face whose detector box is ``box``: its landmarks, 68 points and aligned crop;
        None when the Landmarker finds no face there."""
        cx, cy, side = box.square(self.landmarker.crop_factor)
        res = self.landmarker.landmarks(bgr, cx, cy, side)
        if res is None:
            log.debug("box %s had no landmarks", box)
            return None
        pts68 = landmarks.mediapipe_to_68(res.mesh)
        return Face(box, res.mesh, pts68, geometry.align_face(bgr, pts68), res.blendshapes)

    def process(self, bgr: np.ndarray, boxes: list[FaceBox] | None = None) -> list[Face]:
        boxes = self.detector.detect(bgr) if boxes is None else boxes
        faces = [f for f in (self.face_in_box(bgr, b) for b in boxes) if f is not None]
        faces.sort(key=lambda f: f.box.x + f.box.w / 2)
        return faces


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest detector box (the subject of a portrait or a dataset frame)."""
    return max(faces, key=lambda f: f.box.w * f.box.h) if faces else None


class IoUTracker:
    """Greedy IoU matching of boxes between consecutive frames -> stable track ids."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 15):
        self.min_iou = min_iou
        self.max_missed = max_missed
        self._tracks: dict[int, tuple[np.ndarray, int]] = {}
        self._next = 0

    @staticmethod
    def _iou(a: np.ndarray, b: np.ndarray) -> float:
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)

    def update(self, boxes: list[np.ndarray]) -> list[int]:
        pairs = sorted(
            ((self._iou(b, t[0]), i, tid) for i, b in enumerate(boxes) for tid, t in self._tracks.items()),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, i, tid in pairs:
            if iou < self.min_iou:
                break
            if ids[i] is None and tid not in used:
                ids[i] = tid
                used.add(tid)
        for i, b in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next
                self._next += 1
            self._tracks[ids[i]] = (np.asarray(b, dtype=np.float64), 0)
        for tid in list(self._tracks):
            if tid not in ids:
                box, missed = self._tracks[tid]
                if missed + 1 > self.max_missed:
                    del self._tracks[tid]
                else:
                    self._tracks[tid] = (box, missed + 1)
        return [int(i) for i in ids]
