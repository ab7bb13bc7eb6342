"""The state of one video stream between its frames: frames decoded ahead in a thread, and per
track keyframe reuse, neutral baseline and smoothing (the ``stateful`` options of
``DetectorOptions``)."""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from .temporal import KeyframeReuse, NeutralBaseline, Smoother


def prefetch(frames, depth: int = 4):
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

    t = threading.Thread(target=reader, name="rtatl-decode", daemon=True)
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


class FaceOutputs(NamedTuple):
    """The AU model's outputs for one face, each its own array (float64)."""

    scores: np.ndarray  #: (N,) raw AU scores (probabilities before the card's calibration)
    intensity: np.ndarray | None  #: (N,) raw 0-5 intensities (a model with the intensity head)
    emotions: np.ndarray | None  #: (E,) expression probabilities (a model with the expression head)


class StreamState:
    """Per-track state of one video stream: keyframe reuse, calibration, smoothing (in that order)."""

    def __init__(self, options, neutral_frames=None):
        reuse = options.reuse_config
        self.smoother = Smoother(options.smoothing) if options.smoothing else None
        self.baseline = NeutralBaseline() if options.calibration else None
        self.reuse = KeyframeReuse(reuse) if reuse is not None else None
        self.neutral_frames = neutral_frames or set()
        # head pose and gaze are smoothed like the probabilities (never calibrated)
        self.pose_smoother = Smoother(options.smoothing) if options.smoothing else None
        self.gaze_smoother = Smoother(options.smoothing) if options.smoothing else None

    def outputs(self, index: int, faces, tids: list[int], infer) -> list[FaceOutputs]:
        """Each face's outputs: the AU model's (``infer``), or its track's last ones where keyframe
        reuse finds the face unchanged; then the track's baseline (on the scores only) and
        smoothing (each output on its own, per track)."""
        outs = list(infer(faces)) if self.reuse is None else self.reuse(faces, tids, infer)
        result = []
        for o, tid in zip(outs, tids):
            scores = o.scores
            if self.baseline is not None:  # on the probabilities only, never the intensities
                if index in self.neutral_frames:
                    self.baseline.add_neutral(tid, scores)
                scores = self.baseline(tid, scores)
            o = o._replace(scores=scores)
            if self.smoother is not None:
                o = FaceOutputs(*(None if v is None else self.smoother((tid, k), v) for k, v in zip(o._fields, o)))
            result.append(o)
        return result

    def geometry(self, tid: int, pose, gaze):
        """A track's head pose and gaze, smoothed per track when smoothing is on (the neutral
        baseline never applies to them). A frame without a value leaves the track's state as it was."""
        if self.pose_smoother is None:
            return pose, gaze
        if pose is not None:
            v = self.pose_smoother(tid, np.array([pose.tx, pose.ty, pose.tz, pose.rx, pose.ry, pose.rz]))
            pose = pose.model_copy(update=dict(zip(("tx", "ty", "tz", "rx", "ry", "rz"), map(float, v))))
        if gaze is not None:
            from ..face.pose import gaze_angles

            v = self.gaze_smoother(tid, np.array([*gaze.eye0, *gaze.eye1]))
            e0, e1 = v[:3] / np.linalg.norm(v[:3]), v[3:] / np.linalg.norm(v[3:])
            ax, ay = gaze_angles(e0, e1)
            gaze = gaze.model_copy(update={"eye0": tuple(map(float, e0)), "eye1": tuple(map(float, e1)),
                                           "angle_x": ax, "angle_y": ay})
        return pose, gaze

    def stats(self, tracker) -> dict:
        """What the stream cost: frames, detector runs, lost tracks, AU inferences reused."""
        out = {"frames": tracker.stats.frames, "detections": tracker.stats.detections, "lost": tracker.stats.lost}
        if self.reuse is not None:
            out.update(faces=self.reuse.seen, reused=self.reuse.reused)
        return out
