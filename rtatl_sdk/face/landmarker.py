"""MediaPipe Face Landmarker (tasks API) run on one face crop at a time.

The Landmarker's own detector misses small faces, so each detector box is made a square
``crop_factor`` times its larger side, warped to ``crop_size`` pixels and given to the
Landmarker in image mode with one face; its 478 points are mapped back to image pixels.

In a video, each tracked face has its own ``LandmarkSession``: a Landmarker graph in video mode,
which takes the face's square from its landmarks of the previous call instead of running
MediaPipe's detector again (2-5 ms less per face here; ``bench/bench_faces.py``). Tracks' graphs
are independent, so several tracks may be landmarked in parallel threads.
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


def _create_graph(path, video: bool, blendshapes: bool, min_presence: float):
    """A MediaPipe Face Landmarker for one face, in image or video mode."""
    from .mp_import import vision as mp_vision

    vision = mp_vision()  # MediaPipe without its drawing, audio and text modules (start-up)
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_faces=1,
        min_face_detection_confidence=0.3,
        min_face_presence_confidence=min_presence,
        min_tracking_confidence=min_presence,
        output_face_blendshapes=blendshapes,
    )
    try:
        with native_logs():  # MediaPipe's start-up lines: shown only with rtatl_sdk.native at DEBUG
            return vision.FaceLandmarker.create_from_options(options)
    except Exception as exc:  # mediapipe raises RuntimeError/ValueError with C++ text
        raise ModelFileError(f"face landmarker {path}: cannot be loaded ({exc})") from None


def _points_reader():
    """``read(graph, image, ts) -> (478, 3) float64 normalised points or None`` that calls the
    Landmarker's C function as ``detect``/``detect_for_video`` do, but in the calling thread, and
    reads the points straight from the C result with numpy.

    MediaPipe's own calls hand each C call to a per-graph dispatcher thread and build 478 Python
    objects per face; reading the points directly cut a video-mode call 9.98 -> 8.88 ms here (that
    1.1 ms held the GIL), and calling in this thread spares the face thread two thread hand-offs per
    frame (docs/benchmarks.md). The values are the same floats. The caller keeps calls to one graph
    one at a time, as the dispatcher did (``LandmarkSession`` and ``FaceLandmarker`` hold a lock).
    None where this MediaPipe is laid out otherwise (older versions): the public calls are used then."""
    import ctypes

    try:
        from mediapipe.tasks.python.components.containers.landmark_c import MpNormalizedLandmarkC as Point
        from mediapipe.tasks.python.core.mediapipe_c_utils import handle_status
        from mediapipe.tasks.python.vision.face_landmarker import MpFaceLandmarkerResultC as Result
    except ImportError:
        return None
    size, x = ctypes.sizeof(Point), Point.x.offset
    if (Point.y.offset, Point.z.offset) != (x + 4, x + 8) or ctypes.sizeof(ctypes.c_float) != 4:
        return None
    calls = ("MpFaceLandmarkerDetectImage", "MpFaceLandmarkerDetectForVideo", "MpFaceLandmarkerCloseResult", "MpErrorFree")

    def c_library(graph):
        """The ctypes library behind the graph's dispatcher, with MediaPipe's signatures set; else None."""
        lib = getattr(getattr(graph, "_lib", None), "_lib", None)
        try:
            return lib if all(getattr(lib, f).argtypes is not None for f in calls) else None
        except AttributeError:
            return None

    def read(graph, image, ts):
        lib, handle = c_library(graph), getattr(graph, "_handle", None)
        ptr = getattr(image, "_image_ptr", None)
        if lib is None or handle is None or ptr is None:
            return _public(graph, image, ts)
        res, err = Result(), ctypes.c_char_p()
        if ts is None:
            status = lib.MpFaceLandmarkerDetectImage(handle, ptr, None, ctypes.byref(res), ctypes.byref(err))
        else:
            status = lib.MpFaceLandmarkerDetectForVideo(handle, ptr, None, ts, ctypes.byref(res), ctypes.byref(err))
        try:
            handle_status(status, err)  # MediaPipe's own exception for a failed call
        finally:
            if err.value is not None:
                lib.MpErrorFree(err)
        try:
            if res.face_landmarks_count < 1 or res.face_landmarks[0].landmarks_count < 1:
                return None
            face = res.face_landmarks[0]
            raw = (ctypes.c_char * (face.landmarks_count * size)).from_address(ctypes.addressof(face.landmarks.contents))
            return np.ndarray((face.landmarks_count, 3), np.float32, raw, x, (size, 4)).astype(np.float64)
        finally:
            lib.MpFaceLandmarkerCloseResult(ctypes.byref(res))

    return read


def _result_points(result) -> np.ndarray | None:
    """The first face's normalised points of a MediaPipe result object, or None."""
    if not result.face_landmarks:
        return None
    return np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float64)


def _public(graph, image, ts):
    """The points through MediaPipe's public calls and result objects."""
    return _result_points(graph.detect(image) if ts is None else graph.detect_for_video(image, ts))


class LandmarkSession:
    """One tracked face's Landmarker in video mode (``FaceLandmarker.session()``): consecutive
    calls follow the face from its previous landmarks; MediaPipe's detector runs again only when
    its face-presence score drops. One session per face; ``close()`` frees the graph. Calls from
    several threads are taken one at a time."""

    #: milliseconds between calls (video mode needs increasing timestamps; nothing else reads them)
    STEP_MS = 33

    def __init__(self, graph):
        self._graph = graph
        self._ts = 0
        self._lock = threading.Lock()  #: one call into the graph at a time, and none after close
        self.closed = False

    def detect(self, image):
        """MediaPipe's result for the next frame's crop (its public objects)."""
        with self._lock:
            return self._graph.detect_for_video(image, self._next())

    def points(self, image, read) -> np.ndarray | None:
        """The next frame's normalised points through ``read`` (``_points_reader``), or None."""
        with self._lock:
            return read(self._graph, image, self._next())

    def _next(self) -> int:
        if self.closed:
            raise ClosedError("landmark session: closed")
        self._ts += self.STEP_MS
        return self._ts

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._graph.close()


class FaceLandmarker:
    def __init__(self, model_path=None, blendshapes: bool = False, crop_factor: float = 1.8,
                 crop_size: int = 256, min_presence: float = 0.5):
        path = store.resolve(store.FACE_LANDMARKER, model_path)
        self.path = path  #: the .task file (it also carries the face geometry of ``rtatl_sdk.face.pose``)
        self.min_presence = min_presence
        self._landmarker = _create_graph(path, False, blendshapes, min_presence)
        self._lock = threading.Lock()  #: one image-mode call at a time, and none after close
        # Close the graph before interpreter teardown: mediapipe's own __del__ fails once its
        # dispatcher threads are gone, and threading's exit hooks run before that happens.
        self._closed = False
        threading._register_atexit(functools.partial(_close_ref, weakref.ref(self)))
        self.blendshapes = blendshapes
        self.crop_factor = crop_factor
        self.crop_size = crop_size
        self._read = _points_reader()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._landmarker.close()

    def session(self) -> LandmarkSession:
        """A video-mode Landmarker for one tracked face (the caller closes it)."""
        if self._closed:
            raise ClosedError("face landmarker: closed; make a new one")
        return LandmarkSession(_create_graph(self.path, True, self.blendshapes, self.min_presence))

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter teardown: nothing left to report to
            pass

    def _image_mode(self, call):
        """``call(graph)`` on the image-mode graph, one caller at a time."""
        with self._lock:
            if self._closed:
                raise ClosedError("face landmarker: closed; make a new one")
            return call(self._landmarker)

    def crop_matrix(self, cx: float, cy: float, side: float) -> np.ndarray:
        """2x3 matrix: image pixels -> crop pixels for a square of ``side`` centred at (cx, cy)."""
        k = self.crop_size / side
        return np.array([[k, 0.0, self.crop_size / 2 - k * cx], [0.0, k, self.crop_size / 2 - k * cy]])

    def landmarks(self, bgr: np.ndarray, cx: float, cy: float, side: float,
                  session: LandmarkSession | None = None) -> LandmarkResult | None:
        """Landmarks of the face in the square (cx, cy, side), or None if none is found there;
        ``session``: the tracked face's video-mode Landmarker (default: image mode)."""
        if self._closed:
            raise ClosedError("face landmarker: closed; make a new one")
        import cv2
        import mediapipe as mp

        m = self.crop_matrix(cx, cy, side)
        crop = cv2.warpAffine(bgr, m, (self.crop_size, self.crop_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)  # the same bytes as crop[:, :, ::-1], 40x cheaper here
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        shapes = None
        if self.blendshapes:  # the teacher's path: MediaPipe's own result objects
            result = self._image_mode(lambda g: g.detect(image)) if session is None else session.detect(image)
            pts = _result_points(result)
            if pts is None:
                return None
            if result.face_blendshapes:
                shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        else:
            read = self._read or _public
            pts = self._image_mode(lambda g: read(g, image, None)) if session is None else session.points(image, read)
            if pts is None:
                return None
        pts[:, :2] *= self.crop_size
        k = m[0, 0]
        pts[:, 0] = (pts[:, 0] - m[0, 2]) / k
        pts[:, 1] = (pts[:, 1] - m[1, 2]) / k
        return LandmarkResult(pts, shapes)
