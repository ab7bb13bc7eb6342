"""``AUDetector``: faces -> 68 landmarks -> aligned crops -> AU model -> typed results."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .contract.emotions import softmax
from .contract.geometry import centres_in_image, inside_image
from .contract.preprocess import model_inputs, sigmoid
from .errors import ClosedError, InputError, RTATLError
from .io.images import load_image
from .options import DetectorOptions, ReuseConfig, check_detect_every
from .results import AUResult, FaceAUs, FrameResult, Gaze, HeadPose
from .stream.state import FaceOutputs, StreamState, prefetch

log = logging.getLogger(__name__)


def default_model_path(providers: list[str] | None = None) -> Path:
    """``$RTATL_MODEL``, else the model store, else the bundled model (``store.resolve``'s order).

    On CPU the INT8 model is preferred where it is there: export writes it only when its AU
    decisions agree with the fp32 model's on real faces (the shipped one: >= 98 %).
    """
    from .engines import best_providers

    on_gpu = any(p in (providers or best_providers()) for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    names = (store.AU_MODEL.filename,) if on_gpu else (store.AU_MODEL_INT8, store.AU_MODEL.filename)
    return store.resolve(store.AU_MODEL, None, names)


def auto_engine_threads() -> int:
    """The AU engine's threads when the user sets none: the cores this process may use, less one
    for the face stages (MediaPipe's Landmarker and the detector run beside the AU model in a
    video); at least one. On two cores: one (in a bench_faces run on the AVX-512 kind, one thread
    gave 121.7 against 90.6 frames/s steady state with one face, 39.5 against 28.4 with four)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class AUDetector:
    """Detect faces and their action units in images, folders, videos and cameras.

    >>> det = AUDetector()                         # bundled default model, best provider
    >>> faces = det.detect("photo.jpg")
    >>> faces[0].aus["AU12"].probability
    >>> v2 = AUDetector("v2")                      # the bundled earlier default (full-size graph)

    Settings are a ``DetectorOptions`` (``options=``) or its fields as keywords (``smoothing=0.5``);
    they are validated once, here, and a bad one raises ``InputError`` naming it.

    One instance may be shared by threads: the face pipeline (MediaPipe) is used under a
    lock, the AU engine is thread-safe, and the results equal serial use. It owns its engine
    and face pipeline: ``close()`` (or leaving ``with AUDetector() as det:``) closes both, and a
    closed detector raises ``ClosedError`` (also in threads that share it).
    """

    def __init__(self, model: str | os.PathLike | None = None, options: DetectorOptions | dict | None = None,
                 **kwargs: Any):
        from .engines import load_engine
        from .face import FacePipeline

        self.options = opts = DetectorOptions.make(options, **kwargs)
        path = store.au_model_path(model) if model is not None else default_model_path(opts.providers)
        # the face pipeline (MediaPipe graph, detector session) loads in a thread while the AU
        # engine loads here: both spend their start-up in native code
        with ThreadPoolExecutor(1, thread_name_prefix="rtatl-load") as pool:
            face = pool.submit(FacePipeline, blendshapes=opts.blendshapes, detector_path=opts.detector_model,
                               landmarker_path=opts.landmarker_model)
            try:
                #: the AU engine's intra-op threads: the user's, or one per core but one, which is left to
                #: the face stages (the Landmarker of the next frame runs while the AU model runs)
                self.engine_threads = opts.threads or auto_engine_threads()
                self.engine = load_engine(path, opts.providers, self.engine_threads, opts.backend)  # validates the card first
            except BaseException:
                if face.exception() is None:
                    face.result().close()
                raise
            try:
                self.pipeline = face.result()
            except BaseException:
                self.engine.close()
                raise
        self.card = self.engine.card
        self.model_path = path
        self.aus = list(self.card.aus)
        self.au_numbers = self.card.au_numbers
        if opts.thresholds == "strict" and self.card.thresholds_strict is None:
            self._close_resources()
            raise InputError(f"thresholds={opts.thresholds!r}", f"the card of {path} has no strict operating point")
        #: the operating point on the network's raw scores (``AUResult.score``)
        self.thresholds = np.asarray(self.card.thresholds_strict if opts.thresholds == "strict" else self.card.thresholds,
                                     np.float64)
        self._face_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()  #: MediaPipe's graph and onnxruntime's threads do not survive a fork
        self.last_stream: dict = {}  #: what the last finished ``detect_video`` stream cost

    # --- options ------------------------------------------------------------------------
    @property
    def reuse(self) -> ReuseConfig | None:
        """Keyframe reuse in videos (None: off); assign a ``ReuseConfig``, True or None/False."""
        return self.options.reuse_config

    @reuse.setter
    def reuse(self, value: ReuseConfig | bool | None) -> None:
        self.options = DetectorOptions.make(self.options, reuse=value if value is not None else False)

    @property
    def detect_every(self) -> int:
        return self.options.detect_every

    # --- resources ----------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("AUDetector: closed; make a new one")
        if os.getpid() != self._pid:
            raise RTATLError("AUDetector: made in another process (a fork copies it without its MediaPipe and "
                             "onnxruntime threads, so it would never answer); make one in each process, or use "
                             "multiprocessing's 'spawn' start method")

    def close(self) -> None:
        """Close the AU engine (onnxruntime / OpenVINO sessions, TensorRT buffers) and the face
        pipeline (MediaPipe graph, detector session). Calls after this raise ``ClosedError``."""
        if self._closed:
            return
        self._closed = True
        with self._face_lock:  # a face stage running in another thread finishes first
            self.pipeline.close()
        self.engine.close()

    def __enter__(self) -> AUDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- single images ---------------------------------------------------------------------
    def _faces(self, bgr: np.ndarray):
        with self._face_lock:  # MediaPipe graphs are not re-entrant
            self._check_open()
            return self.pipeline.process(bgr)

    def _close_resources(self) -> None:
        self.pipeline.close()
        self.engine.close()

    @property
    def has_intensity(self) -> bool:
        """Whether the model has an intensity head (a second output, ``intensity``, 0-5)."""
        return "intensity" in getattr(self.engine, "outputs", ()) and self.card.intensity_scale is not None

    @property
    def published_thresholds(self) -> np.ndarray:
        """The thresholds on the published ``AUResult.probability``: 0.5 for a calibrated card (its
        probabilities are calibrated around the operating point), the raw thresholds otherwise."""
        return np.full(len(self.aus), 0.5) if self.card.calibration is not None else self.thresholds

    @property
    def emotion_names(self) -> list[str] | None:
        """The expressions each face gets (the card's, in output order), or None: a model without the
        expression head, or ``emotions=False``."""
        if not (self.options.emotions and self.card.emotions and "emotions" in getattr(self.engine, "outputs", ())):
            return None
        return list(self.card.emotions)

    def _outputs(self, faces) -> list[FaceOutputs]:
        """The AU model's outputs per face: raw scores, raw intensities (a model with the intensity
        head) and expression probabilities (one with the expression head), each its own array (the
        stream state calibrates the scores only and smooths each)."""
        out: list[FaceOutputs] = []
        names = ["logits"] + (["intensity"] if self.has_intensity else []) + (["emotions"] if self.emotion_names else [])
        step = self.options.max_batch
        for s in range(0, len(faces), step):
            chunk = faces[s:s + step]
            image, centres = model_inputs([f.crop() for f in chunk], [f.crop_landmarks() for f in chunk], self.au_numbers,
                                          self.card.mean, self.card.std, self.card.colour_order)
            res = self.engine.infer(image, centres, names)
            scores = sigmoid(res["logits"])
            inten = np.asarray(res["intensity"], np.float64) if self.has_intensity else None  # float64 as the scores
            emo = np.asarray(softmax(res["emotions"]), np.float64) if self.emotion_names else None
            out += [FaceOutputs(scores[k], None if inten is None else inten[k], None if emo is None else emo[k])
                    for k in range(len(chunk))]
        return out

    def _geometry(self, face, image_shape) -> tuple[HeadPose | None, Gaze | None]:
        """Head pose and gaze of ``face`` in the frame's camera (``rtatl_sdk.face.pose``)."""
        from .face.pose import head_and_gaze

        path = getattr(self.pipeline.landmarker, "path", None)
        mesh = getattr(face, "mesh", None)
        if path is None or mesh is None:
            return None, None
        return head_and_gaze(mesh, path, image_shape, self.options.focal_length, self.options.principal_point)

    def _result(self, i: int, face, outputs: FaceOutputs, image_shape, track_id: int | None = None,
                geometry=None) -> FaceAUs:
        b = face.box
        pts = face.landmarks
        quality = float(inside_image(pts, image_shape).mean())
        seen = centres_in_image(pts, self.au_numbers, image_shape)
        scores, raw_int, emo = outputs
        card = self.card
        published = card.calibrate(scores, self.thresholds)
        shown_thr = self.published_thresholds
        inten = card.anchor_intensity(raw_int) if raw_int is not None else [None] * len(scores)
        aus = {name: AUResult(probability=float(p), present=bool(s >= t) if ok else None, threshold=float(st),
                              intensity=None if v is None or not ok else float(v), score=float(s))
               for name, p, s, t, st, ok, v in zip(self.aus, published, scores, self.thresholds, shown_thr, seen, inten)}
        emotions = None if emo is None else {e: float(v) for e, v in zip(self.emotion_names, emo / max(emo.sum(), 1e-12))}
        crop = (face.crop(), face.au_centres(self.au_numbers)) if self.options.keep_crops else (None, None)
        head, gaze = geometry if geometry is not None else self._geometry(face, image_shape)
        return FaceAUs(index=i, box=b, landmarks=face.landmarks, aus=aus, track_id=track_id,
                       blendshapes=face.blendshapes, quality=quality, crop=crop[0], crop_centres=crop[1],
                       pose=head, gaze=gaze, emotions=emotions,
                       emotion=None if emotions is None else max(emotions, key=emotions.get))

    def detect(self, image, colour: str = "bgr") -> list[FaceAUs]:
        """Faces and AUs of one image: a path, encoded bytes, a numpy array (BGR unless
        ``colour="rgb"``) or a PIL image. No face -> an empty list."""
        self._check_open()
        bgr = load_image(image, colour=colour)
        faces = self._faces(bgr)
        outputs = self._outputs(faces)
        return [self._result(i, f, o, bgr.shape) for i, (f, o) in enumerate(zip(faces, outputs))]

    def detect_batch(self, images, colour: str = "bgr") -> list[list[FaceAUs]]:
        """Like ``detect`` for several images, pipelined: the face stage (decoding, detector,
        Landmarker) of the next images runs in a thread while the AU model runs on the faces found
        so far, in batches of up to ``max_batch`` faces. Results are in the images' order; a bad
        image raises ``InputError`` naming it (``images[k]`` or its path)."""
        from collections import deque

        self._check_open()
        if isinstance(images, (str, bytes, os.PathLike, np.ndarray)):
            raise InputError("images", "detect_batch takes a list of images; use detect() for one image")

        def find(k, img):
            name = str(img) if isinstance(img, (str, os.PathLike)) else f"images[{k}]"
            bgr = load_image(img, colour=colour, name=name)
            return bgr.shape, self._faces(bgr)

        found: list[tuple] = []  # (shape, faces) per image, in order
        out: list[list[FaceAUs]] = []

        def flush() -> None:  # the AU model on every image found but not yet answered
            flat = [f for _, faces in found for f in faces]
            outputs = self._outputs(flat)
            at = 0
            for shape, faces in found:
                out.append([self._result(i, f, outputs[at + i], shape) for i, f in enumerate(faces)])
                at += len(faces)
            found.clear()

        with ThreadPoolExecutor(1, thread_name_prefix="rtatl-faces") as pool:
            pending: deque = deque()
            try:
                for k, img in enumerate(images):
                    pending.append(pool.submit(find, k, img))
                    while len(pending) > 2:  # face finding runs up to two images ahead
                        found.append(pending.popleft().result())
                        if sum(len(f) for _, f in found) >= self.options.max_batch:
                            flush()
                while pending:
                    found.append(pending.popleft().result())
                flush()
            finally:
                for fut in pending:
                    fut.cancel()
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
        from .face.tracking import FaceTracker
        from .stream.video import iter_frames

        self._check_open()
        for label, value, low in (("max_frames", max_frames, 1), ("start", start, 0), ("lookahead", lookahead, 0)):
            if value is None and label == "max_frames":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{label}={value!r}", f"must be a whole number, {low} or more")
        every = self.options.detect_every if detect_every is None else check_detect_every(detect_every)
        tracker = FaceTracker(self.pipeline, every, video_mode=self.options.landmark_tracking)
        stream = StreamState(self.options, neutral_frames)
        frames = (fr for fr in prefetch(iter_frames(source, max_frames=max_frames)) if fr.index >= start)
        found = self._with_faces(frames, lookahead, tracker)
        try:
            for fr, tracked in found:
                if fr.image is None:
                    yield FrameResult(index=fr.index, timestamp=fr.timestamp, faces=[],
                                      error=fr.error or "frame could not be decoded")
                    continue
                tids, faces = [t for t, _ in tracked], [f for _, f in tracked]
                outputs = stream.outputs(fr.index, faces, tids, self._outputs)
                geo = [stream.geometry(tid, *self._geometry(f, fr.image.shape)) for f, tid in zip(faces, tids)]
                results = [self._result(i, f, o, fr.image.shape, tid, g)
                           for i, (f, o, tid, g) in enumerate(zip(faces, outputs, tids, geo))]
                yield FrameResult(index=fr.index, timestamp=fr.timestamp, faces=results,
                                  image=fr.image if keep_images else None)
        finally:
            found.close()  # stops the face thread: its pool finishes the frames it holds first
            with self._face_lock:
                tracker.close()  # the tracks' video-mode Landmarkers
        self.last_stream = stream.stats(tracker)

    def _with_faces(self, frames, lookahead: int, tracker):
        """(frame, [(track_id, face)]) in order; face finding runs ``lookahead`` frames ahead in a thread."""
        def find(fr):
            if fr.image is None:
                return fr, []
            with self._face_lock:  # MediaPipe graphs are not re-entrant
                self._check_open()
                return fr, tracker(fr.image)

        if lookahead <= 0:
            yield from map(find, frames)
            return
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="rtatl-face-thread") as pool:
            pending: deque = deque()
            for fr in frames:
                pending.append(pool.submit(find, fr))
                if len(pending) > lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
