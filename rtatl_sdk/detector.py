"""``AUDetector``: faces -> 68 landmarks -> aligned crops -> AU model -> typed results."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import store
from .errors import InputError
from .face.tracking import DETECT_EVERY
from .geometry import centres_in_image
from .images import load_image
from .preprocess import model_inputs, sigmoid
from .results import AUResult, FaceAUs, FrameResult
from .temporal import KeyframeReuse, NeutralBaseline, ReuseConfig, Smoother

log = logging.getLogger(__name__)


def default_model_path(providers: list[str] | None = None) -> Path:
    """``$RTATL_MODEL``, else the model store, else the bundled model (``store.resolve``'s order).

    On CPU the INT8 model is preferred where it is there: export writes it only when its AU
    decisions agree with the fp32 model's on real faces (the shipped one: >= 98 %).
    """
    from .engine import best_providers

    on_gpu = any(p in (providers or best_providers()) for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    names = (store.AU_MODEL.filename,) if on_gpu else (store.AU_MODEL_INT8, store.AU_MODEL.filename)
    return store.resolve(store.AU_MODEL, None, names)


def _prefetch(frames, depth: int = 4):
    """Decode frames in a background thread while the caller processes earlier ones (same order)."""
    import queue

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader():
        try:
            for fr in frames:
                if not put(fr):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        finally:
            frames.close()  # release the capture in this thread
        put(done)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class _StreamState:
    """Per-track state of one video stream: keyframe reuse, calibration, smoothing (in that order)."""

    def __init__(self, smoothing: float | None, calibration: bool, reuse: ReuseConfig | None, neutral_frames):
        self.smoother = Smoother(smoothing) if smoothing else None
        self.baseline = NeutralBaseline() if calibration else None
        self.reuse = KeyframeReuse(reuse) if reuse is not None else None
        self.neutral_frames = neutral_frames or set()

    def probabilities(self, index: int, faces, tids: list[int], infer) -> list[np.ndarray]:
        """Each face's probabilities: the AU model's (``infer``), or its track's last ones where
        keyframe reuse finds the face unchanged; then the track's baseline and smoothing."""
        if self.reuse is None:
            probs = list(infer(faces))
        else:
            probs = self.reuse(faces, tids, infer)
        out = []
        for p, tid in zip(probs, tids):
            if self.baseline is not None:
                if index in self.neutral_frames:
                    self.baseline.add_neutral(tid, p)
                p = self.baseline(tid, p)
            if self.smoother is not None:
                p = self.smoother(tid, p)
            out.append(p)
        return out

    def stats(self, tracker) -> dict:
        """What the stream cost: frames, detector runs, lost tracks, AU inferences reused."""
        out = {"frames": tracker.stats.frames, "detections": tracker.stats.detections, "lost": tracker.stats.lost}
        if self.reuse is not None:
            out.update(faces=self.reuse.seen, reused=self.reuse.reused)
        return out


class AUDetector:
    """Detect faces and their action units in images, folders, videos and cameras.

    >>> det = AUDetector()                         # bundled default model, best provider
    >>> faces = det.detect("photo.jpg")
    >>> faces[0].aus["AU12"].probability

    One instance may be shared by threads: the face pipeline (MediaPipe) is used under a
    lock, the AU engine is thread-safe, and the results equal serial use.
    """

    def __init__(self, model: str | os.PathLike | None = None, providers: list[str] | None = None,
                 threads: int = 0, blendshapes: bool = False, detector_model=None, landmarker_model=None,
                 smoothing: float | None = None, calibration: bool = False, max_batch: int = 32,
                 keep_crops: bool = False, detect_every: int = DETECT_EVERY, reuse: ReuseConfig | bool = True,
                 backend: str = "onnxruntime"):
        from .engine import load_engine
        from .face import FacePipeline

        path = Path(model) if model is not None else default_model_path(providers)
        self.engine = load_engine(path, providers, threads, backend)  # validates the card first
        self.card = self.engine.card
        self.model_path = path
        self.aus = list(self.card.aus)
        self.au_numbers = self.card.au_numbers
        self.thresholds = np.asarray(self.card.thresholds, np.float64)
        self.pipeline = FacePipeline(blendshapes=blendshapes, detector_path=detector_model, landmarker_path=landmarker_model)
        self._face_lock = threading.Lock()
        self.max_batch = max_batch
        self.smoothing = smoothing
        self.calibration = calibration
        self.keep_crops = keep_crops
        self.detect_every = detect_every
        #: keyframe reuse in videos: True the default ``ReuseConfig()``, a config, or False/None (off)
        self.reuse = ReuseConfig() if reuse is True else (reuse or None)
        self.last_stream: dict = {}  #: what the last finished ``detect_video`` stream cost

    # --- single images ---------------------------------------------------------------------
    def _faces(self, bgr: np.ndarray):
        with self._face_lock:  # MediaPipe graphs are not re-entrant
            return self.pipeline.process(bgr)

    def _probabilities(self, faces) -> np.ndarray:
        if not faces:
            return np.zeros((0, len(self.aus)))
        out = []
        for s in range(0, len(faces), self.max_batch):
            chunk = faces[s:s + self.max_batch]
            image, centres = model_inputs([f.crop() for f in chunk], [f.crop_landmarks() for f in chunk], self.au_numbers,
                                          self.card.mean, self.card.std)
            out.append(self.engine.run(image, centres))
        return sigmoid(np.concatenate(out))

    def _result(self, i: int, face, probs: np.ndarray, image_shape, track_id: int | None = None) -> FaceAUs:
        b = face.box
        h, w = image_shape[:2]
        pts = face.landmarks
        quality = float(((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)).mean())
        seen = centres_in_image(pts, self.au_numbers, image_shape)
        aus = {name: AUResult(probability=float(p), present=bool(p >= t) if ok else None, threshold=float(t))
               for name, p, t, ok in zip(self.aus, probs, self.thresholds, seen)}
        crop = (face.crop(), face.au_centres(self.au_numbers)) if self.keep_crops else (None, None)
        return FaceAUs(index=i, box=b, landmarks=face.landmarks, aus=aus, track_id=track_id,
                       blendshapes=face.blendshapes, quality=quality, crop=crop[0], crop_centres=crop[1])

    def detect(self, image, colour: str = "bgr") -> list[FaceAUs]:
        """Faces and AUs of one image: a path, encoded bytes, a numpy array (BGR unless
        ``colour="rgb"``) or a PIL image. No face -> an empty list."""
        bgr = load_image(image, colour=colour)
        faces = self._faces(bgr)
        probs = self._probabilities(faces)
        return [self._result(i, f, p, bgr.shape) for i, (f, p) in enumerate(zip(faces, probs))]

    def detect_batch(self, images, colour: str = "bgr") -> list[list[FaceAUs]]:
        """Like ``detect`` for several images; the faces of all images go through the AU model
        together (batches of up to ``max_batch``)."""
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray)):
            raise InputError("images", "detect_batch takes a list of images; use detect() for one image")
        per_image, shapes = [], []
        for k, img in enumerate(images):
            name = str(img) if isinstance(img, (str, os.PathLike)) else f"images[{k}]"
            bgr = load_image(img, colour=colour, name=name)
            shapes.append(bgr.shape)
            per_image.append(self._faces(bgr))
        flat = [f for faces in per_image for f in faces]
        probs = self._probabilities(flat)
        out, at = [], 0
        for faces, shape in zip(per_image, shapes):
            out.append([self._result(i, f, probs[at + i], shape) for i, f in enumerate(faces)])
            at += len(faces)
        return out

    # --- video and cameras -----------------------------------------------------------------
    def detect_video(self, source, max_frames: int | None = None, start: int = 0,
                     neutral_frames: set[int] | None = None, keep_images: bool = False,
                     lookahead: int = 2, detect_every: int | None = None) -> Iterator[FrameResult]:
        """Results for each frame of a video file (path) or camera (int index), in order.

        ``face.track_id`` follows each person across frames. Faces are tracked: the detector
        runs every ``detect_every`` frames (default: the detector's ``detect_every``), when a
        track is lost and while no face is tracked; in between, landmarks carry each face to
        the next frame (``rtatl_sdk.face.tracking``). ``detect_every=1`` detects on every frame.
        Smoothing, calibration and keyframe reuse (``reuse``), when enabled on the detector, run
        per track; ``neutral_frames`` marks frame indices whose faces show a neutral expression
        (calibration baseline). ``start`` skips frames (resume); ``keep_images`` attaches each
        decoded frame to its result (for drawing).

        Pipelined: frames are decoded in one thread and faces found (detector, landmarker) in
        another, up to ``lookahead`` frames ahead of the AU model; results stay in frame order.
        ``lookahead=0`` runs every stage in the caller's thread.
        """
        from .face.pipeline import IoUTracker
        from .face.tracking import FaceTracker
        from .video import iter_frames

        every = self.detect_every if detect_every is None else detect_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise InputError(f"detect_every={every!r}", "must be a whole number of frames, 1 or more")
        tracker = FaceTracker(self.pipeline, every)
        ids = IoUTracker()
        stream = _StreamState(self.smoothing, self.calibration, self.reuse, neutral_frames)
        frames = (fr for fr in _prefetch(iter_frames(source, max_frames=max_frames)) if fr.index >= start)
        for fr, faces in self._with_faces(frames, lookahead, tracker):
            if fr.image is None:
                yield FrameResult(index=fr.index, timestamp=fr.timestamp, faces=[], error=fr.error or "frame could not be decoded")
                continue
            tids = ids.update([np.array([f.box.x, f.box.y, f.box.w, f.box.h]) for f in faces])
            probs = stream.probabilities(fr.index, faces, tids, self._probabilities)
            results = [self._result(i, f, p, fr.image.shape, tid) for i, (f, p, tid) in enumerate(zip(faces, probs, tids))]
            yield FrameResult(index=fr.index, timestamp=fr.timestamp, faces=results,
                              image=fr.image if keep_images else None)
        self.last_stream = stream.stats(tracker)

    def _with_faces(self, frames, lookahead: int, tracker):
        """(frame, faces) in order; face finding runs ``lookahead`` frames ahead in a thread."""
        def find(fr):
            if fr.image is None:
                return fr, []
            with self._face_lock:  # MediaPipe graphs are not re-entrant
                return fr, tracker(fr.image)

        if lookahead <= 0:
            yield from map(find, frames)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pending: deque = deque()
            for fr in frames:
                pending.append(pool.submit(find, fr))
                if len(pending) > lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def close(self) -> None:
        self.pipeline.landmarker.close()
        if hasattr(self.engine, "close"):  # a TensorRT engine holds GPU buffers and a stream
            self.engine.close()
