"""MediaPipe Face Landmarker (tasks API) run on one face crop at a time.

The Landmarker's own detector misses small faces, so each detector box is made a square
``crop_factor`` times its larger side, warped to ``crop_size`` pixels and given to the
Landmarker in image mode with one face; its 478 points are mapped back to image pixels.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from .. import store
from ..errors import ClosedError, ModelFileError
from ..quiet import native_logs


def _close_ref(ref) -> None:
    obj = ref()
    if obj is not None:
        obj.close()


@dataclass(frozen=True)
class LandmarkResult:
    mesh: np.ndarray  #: (478, 3): x, y in image pixels, z in the Landmarker's relative units
    blendshapes: dict[str, float] | None  #: 52 ARKit-style coefficients when requested


class FaceLandmarker:
    def __init__(self, model_path=None, blendshapes: bool = False, crop_factor: float = 1.8,
                 crop_size: int = 256, min_presence: float = 0.5):
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        path = store.resolve(store.FACE_LANDMARKER, model_path)
        self.path = path  #: the .task file (it also carries the face geometry of ``rtatl_sdk.face.pose``)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=0.3,
            min_face_presence_confidence=min_presence,
            output_face_blendshapes=blendshapes,
        )
        try:
            with native_logs():  # MediaPipe's start-up lines: shown only with rtatl_sdk.native at DEBUG
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as exc:  # mediapipe raises RuntimeError/ValueError with C++ text
            raise ModelFileError(f"face landmarker {path}: cannot be loaded ({exc})") from None
        # Close the graph before interpreter teardown: mediapipe's own __del__ fails once its
        # dispatcher threads are gone, and threading's exit hooks run before that happens.
        self._closed = False
        threading._register_atexit(functools.partial(_close_ref, weakref.ref(self)))
        self.blendshapes = blendshapes
        self.crop_factor = crop_factor
        self.crop_size = crop_size

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._landmarker.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter teardown: nothing left to report to
            pass

    def crop_matrix(self, cx: float, cy: float, side: float) -> np.ndarray:
        """2x3 matrix: image pixels -> crop pixels for a square of ``side`` centred at (cx, cy)."""
        k = self.crop_size / side
        return np.array([[k, 0.0, self.crop_size / 2 - k * cx], [0.0, k, self.crop_size / 2 - k * cy]])

    def landmarks(self, bgr: np.ndarray, cx: float, cy: float, side: float) -> LandmarkResult | None:
        if self._closed:
            raise ClosedError("face landmarker: closed; make a new one")
        """Landmarks of the face in the square (cx, cy, side), or None if none is found there."""
        import cv2
        import mediapipe as mp

        m = self.crop_matrix(cx, cy, side)
        crop = cv2.warpAffine(bgr, m, (self.crop_size, self.crop_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        rgb = np.ascontiguousarray(crop[:, :, ::-1])
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        if not result.face_landmarks:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float64)
        pts[:, :2] *= self.crop_size
        k = m[0, 0]
        pts[:, 0] = (pts[:, 0] - m[0, 2]) / k
        pts[:, 1] = (pts[:, 1] - m[1, 2]) / k
        shapes = None
        if self.blendshapes and result.face_blendshapes:
            shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        return LandmarkResult(pts, shapes)
