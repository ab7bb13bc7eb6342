"""Image -> faces: detector boxes, 478 landmarks per face, 68 points, aligned 200x200 crop."""

from __future__ import annotations

import logging

import numpy as np

from ..contract import geometry, landmarks
from ..errors import ClosedError
from ..results import Box
from .detector import RetinaFaceDetector
from .landmarker import FaceLandmarker

log = logging.getLogger(__name__)


class Face:
    """One face of one image, in image pixels unless said otherwise.

    ``aligned`` (the 200x200 canvas, its landmarks and the transform) is given, or made from
    ``frame`` the first time it is asked for: in a video that is on the AU model's thread, not on
    the face thread that sets the frame rate. Two threads asking at once both compute the same
    canvas; one of them is kept."""

    def __init__(self, box: Box, mesh: np.ndarray, landmarks: np.ndarray, aligned: geometry.AlignedFace | None = None,
                 blendshapes: dict[str, float] | None = None, frame: np.ndarray | None = None):
        if aligned is None and frame is None:
            raise ValueError("Face: give its aligned canvas or the frame to align it from")
        self.box = box
        self.mesh = mesh  #: (478, 3) MediaPipe points
        self.landmarks = landmarks  #: (68, 2)
        self.blendshapes = blendshapes
        self._aligned, self._frame = aligned, frame

    @property
    def aligned(self) -> geometry.AlignedFace:
        """The 200x200 canvas, its landmarks and the transform."""
        aligned, frame = self._aligned, self._frame
        if aligned is None:
            if frame is None:  # another thread has just made it (it sets the canvas before dropping the frame)
                return self._aligned
            aligned = self._aligned = geometry.align_face(frame, self.landmarks)
            self._frame = None  # the frame is not held longer than the face needs it
        return aligned

    def __repr__(self) -> str:
        return f"Face(box={self.box!r}, aligned={'yes' if self._aligned is not None else 'on first use'})"

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
    """``process(bgr) -> list[Face]``; faces sorted left to right.

    It owns its detector and landmarker: ``close()`` (or leaving ``with FacePipeline() as pipe:``)
    closes both, and a closed pipeline raises ``ClosedError``."""

    def __init__(self, detector: RetinaFaceDetector | None = None, landmarker: FaceLandmarker | None = None,
                 blendshapes: bool = False, detector_path=None, landmarker_path=None):
        self.detector = detector or RetinaFaceDetector(detector_path)
        self.landmarker = landmarker or FaceLandmarker(landmarker_path, blendshapes=blendshapes)
        self.closed = False

    def close(self) -> None:
        """Close the landmarker's MediaPipe graph and the detector's session; twice is fine."""
        if not self.closed:
            self.closed = True
            self.landmarker.close()
            self.detector.close()

    def __enter__(self) -> FacePipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("face pipeline: closed; make a new one")

    def face_in_box(self, bgr: np.ndarray, box: Box, session=None) -> Face | None:
        """The face whose detector box is ``box``: its landmarks, 68 points and aligned crop;
        None when the Landmarker finds no face there. ``session``: a tracked face's video-mode
        Landmarker (``FaceLandmarker.session``)."""
        self._check_open()
        cx, cy, side = box.square(self.landmarker.crop_factor)
        res = self.landmarker.landmarks(bgr, cx, cy, side, session)
        if res is None:
            log.debug("box %s had no landmarks", box)
            return None
        pts68 = landmarks.mediapipe_to_68(res.mesh)
        return Face(box, res.mesh, pts68, None, res.blendshapes, frame=bgr)

    def process(self, bgr: np.ndarray, boxes: list[Box] | None = None) -> list[Face]:
        self._check_open()
        boxes = self.detector.detect(bgr) if boxes is None else boxes
        faces = [f for f in (self.face_in_box(bgr, b) for b in boxes) if f is not None]
        faces.sort(key=lambda f: f.box.x + f.box.w / 2)
        return faces


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest detector box (the subject of a portrait or a dataset frame)."""
    return max(faces, key=lambda f: f.box.w * f.box.h) if faces else None
