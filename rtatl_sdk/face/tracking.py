"""Faces across the frames of a video: the detector on some frames, landmarks carry the rest.

A ``FaceTracker`` runs the detector on the first frame, every ``detect_every`` frames, on any
frame where a track was lost and on every frame while no face is tracked (so a face that
appears is found on its first frame with a detection). In between, each tracked face's square
for the Landmarker comes from its own landmarks of the previous frame, which saves the
detector's cost (the largest single stage after the AU model). A track ends when the
Landmarker finds no face in its square (MediaPipe's own detector and face-presence score run
inside it), when its landmarks stop looking like a face, when it lands on a face another track
holds, or when a detection frame finds no detector box on it. ``detect_every=1`` is per-frame detection, as for still images.

Each track has its own video-mode Landmarker (``LandmarkSession``), opened on the frame after the
face is first found and closed when the track ends or the tracker closes (``close()``).

The tracker also decides who is who (``track_id``): a face that continues a track keeps its id;
a face found anew takes the id of a track that ended in the last ``MAX_MISSED`` frames where its
box overlaps that track's last box (a face re-found after a miss), else a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contract import landmarks as lm
from ..options import DETECT_EVERY, check_detect_every
from ..results import Box
from .boxes import greedy_match, iou
from .pipeline import Face, FacePipeline

#: A detector box relative to the bounding box of its face's 68 landmarks (side s = the larger
#: of its width and height): centre offset (x, y) / s and size (w, h) / s. Means over 77 faces
#: of the project's media (std 0.02 / 0.04 / 0.06 / 0.07), measured with the bundled detector.
BOX_FROM_LANDMARKS = (0.004, -0.152, 0.972, 1.340)
#: Largest change of a face's size between two frames that is still the same face (ratio).
MAX_SCALE_STEP = 1.5
#: Two tracked faces overlapping this much are one face: the later track ends.
DUPLICATE_IOU = 0.6
#: Threads that run several tracked faces' video-mode Landmarkers at once (1: one after another).
LANDMARK_THREADS = 2
#: Frames an ended track's id is kept for a face found again where it was (``min_iou`` overlap).
MAX_MISSED = 15


def box_from_landmarks(pts68: np.ndarray, score: float) -> Box:
    """A detector-like box for a face from its 68 landmarks (``BOX_FROM_LANDMARKS``)."""
    lo, hi = pts68.min(0), pts68.max(0)
    s = float(max(hi - lo))
    dx, dy, kw, kh = BOX_FROM_LANDMARKS
    cx, cy = (lo + hi) / 2 + np.array([dx, dy]) * s
    return Box(x=float(cx - kw * s / 2), y=float(cy - kh * s / 2), w=kw * s, h=kh * s, score=score)


def looks_like_a_face(face: Face, previous: Face | None) -> bool:
    """Plausibility of a tracked face's 68 points: eyes apart and above the mouth in the face's
    own frame, and a size within ``MAX_SCALE_STEP`` of the previous frame's."""
    p = face.landmarks
    eye_r, eye_l = p[list(lm.RIGHT_EYE)].mean(0), p[list(lm.LEFT_EYE)].mean(0)
    mouth = p[list(lm.OUTER_MOUTH)].mean(0)
    axis = eye_l - eye_r
    iod = float(np.hypot(*axis))
    if not np.isfinite(p).all() or iod < 4.0:
        return False
    down = np.array([-axis[1], axis[0]]) / iod  # perpendicular to the eye line, towards the mouth
    if float((mouth - (eye_r + eye_l) / 2) @ down) < 0.3 * iod:
        return False
    if previous is not None:
        ratio = face.box.w / max(previous.box.w, 1e-6)
        if not 1 / MAX_SCALE_STEP <= ratio <= MAX_SCALE_STEP:
            return False
    return True


class _Identities:
    """Track ids. ``assign(known, boxes)``: ``known[i]`` is the id of the track face ``i``
    continues, or None for a face found anew; such a face takes the id of a track not continued
    this frame whose last box it overlaps most (greedy, IoU >= ``min_iou``) among those seen in the
    last ``MAX_MISSED`` frames, else the next new id. With no continuing tracks (a detection on
    every frame) this is IoU tracking from frame to frame."""

    def __init__(self, min_iou: float):
        self.min_iou = min_iou
        self._last: dict[int, tuple[tuple, int]] = {}  #: id -> (last (x, y, w, h), frames since seen); ascending ids
        self._next = 0

    def assign(self, known: list[int | None], boxes: list[tuple]) -> list[int]:
        ids = list(known)
        taken = set(i for i in ids if i is not None)
        free = [(tid, box) for tid, (box, _) in self._last.items() if tid not in taken]
        new = [i for i, tid in enumerate(ids) if tid is None]
        for i, j in greedy_match([boxes[k] for k in new], [b for _, b in free], self.min_iou):
            ids[new[i]] = free[j][0]
        for i, tid in enumerate(ids):
            if tid is None:
                ids[i] = tid = self._next
                self._next += 1
            self._last[tid] = (boxes[i], 0)
        for tid in [t for t in self._last if t not in ids]:
            box, missed = self._last[tid]
            if missed + 1 > MAX_MISSED:
                del self._last[tid]
            else:
                self._last[tid] = (box, missed + 1)
        return [int(i) for i in ids]


@dataclass
class _Track:
    face: Face
    session: object  #: its video-mode Landmarker (None in image mode)
    tid: int | None = None  #: None until ``_Identities`` names a face found this frame


@dataclass
class TrackStats:
    frames: int = 0
    detections: int = 0  #: frames on which the detector ran
    lost: int = 0  #: tracks ended by the Landmarker or the face check between detections


class FaceTracker:
    """``tracker(bgr) -> [(track_id, Face)]`` for consecutive frames of one stream (faces left to right).

    ``detect_every``: detector period in frames (1 = every frame, no tracking).
    ``min_iou``: overlap of a detector box with a tracked face's box that makes them one face (and
    of a face found anew with an ended track's last box that gives it that track's id).
    ``video_mode``: each track's own video-mode Landmarker (False: image mode on every frame).
    """

    def __init__(self, pipeline: FacePipeline, detect_every: int = DETECT_EVERY, min_iou: float = 0.3,
                 video_mode: bool = True):
        check_detect_every(detect_every)
        self.pipeline = pipeline
        self.detect_every = detect_every
        self.video_mode = video_mode and detect_every > 1
        self.min_iou = min_iou
        self._tracks: list[_Track] = []
        self._ids = _Identities(min_iou)
        self._pool = None  #: threads for several tracks' Landmarkers (made on first need)
        self._since_detection = 0
        self._lost = False
        self.stats = TrackStats()

    @property
    def faces(self) -> list[Face]:
        """The faces of the last frame, left to right."""
        return [t.face for t in self._tracks]

    def _landmark_all(self, bgr: np.ndarray, boxes: list[Box]) -> list[Face | None]:
        """``face_in_box`` for every track, in order; with several tracks in video mode the tracks'
        own graphs run in ``LANDMARK_THREADS`` threads (MediaPipe releases the GIL while it runs)."""
        calls = [(b, t.session) for b, t in zip(boxes, self._tracks)]
        if not self.video_mode or len(calls) < 2 or LANDMARK_THREADS < 2:
            return [self.pipeline.face_in_box(bgr, b, s) for b, s in calls]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(LANDMARK_THREADS, thread_name_prefix="rtatl-landmarks")
        return list(self._pool.map(lambda c: self.pipeline.face_in_box(bgr, *c), calls))

    def _follow(self, bgr: np.ndarray) -> list[_Track]:
        """Each tracked face re-landmarked (by its own session) in the square its previous landmarks give."""
        kept: list[_Track] = []
        boxes = [box_from_landmarks(t.face.landmarks, t.face.box.score) for t in self._tracks]
        found = self._landmark_all(bgr, boxes)
        for prev, face in zip(self._tracks, found):  # prev.session: None in image mode
            if face is not None:
                face.box = box_from_landmarks(face.landmarks, prev.face.box.score)
                # a track that slid onto a face another track already holds ends too
                if looks_like_a_face(face, prev.face) and all(iou(face.box, k.face.box) < DUPLICATE_IOU for k in kept):
                    kept.append(_Track(face, prev.session, prev.tid))
                    continue
            if prev.session is not None:
                prev.session.close()
            self._lost = True
            self.stats.lost += 1
        return kept

    def _detect(self, bgr: np.ndarray, tracked: list[_Track]) -> list[_Track]:
        """Detector boxes: one over a tracked face keeps that face's landmarks from this frame;
        the others become new faces: landmarked in image mode now, followed by a session of their own
        from the next frame (so a box with no face there costs no session). Tracked faces no box covers end."""
        self.stats.detections += 1
        boxes = self.pipeline.detector.detect(bgr)
        out = []
        used_box, used_track = set(), set()
        for i, j in greedy_match(boxes, [t.face.box for t in tracked], self.min_iou):
            used_box.add(i)
            used_track.add(j)
            tracked[j].face.box = boxes[i]
            out.append(tracked[j])
        for j, t in enumerate(tracked):
            if j not in used_track and t.session is not None:
                t.session.close()
        for i, b in enumerate(boxes):
            if i not in used_box:
                face = self.pipeline.face_in_box(bgr, b)
                if face is not None:
                    out.append(_Track(face, self.pipeline.landmarker.session() if self.video_mode else None))
        return out

    def __call__(self, bgr: np.ndarray) -> list[tuple[int, Face]]:
        self.stats.frames += 1
        self._lost = False
        tracks = self._follow(bgr) if self.detect_every > 1 else []
        due = self._since_detection + 1 >= self.detect_every
        if due or self._lost or not tracks:
            tracks = self._detect(bgr, tracks)
            self._since_detection = 0
        else:
            self._since_detection += 1
        tracks.sort(key=lambda t: t.face.box.x + t.face.box.w / 2)
        ids = self._ids.assign([t.tid for t in tracks], [(t.face.box.x, t.face.box.y, t.face.box.w, t.face.box.h)
                                                         for t in tracks])
        for t, tid in zip(tracks, ids):
            t.tid = tid
        self._tracks = tracks
        return [(t.tid, t.face) for t in tracks]

    def close(self) -> None:
        """Close the tracks' video-mode Landmarkers; the tracker starts afresh if called again
        (track ids from 0)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for t in self._tracks:
            if t.session is not None:
                t.session.close()
        self._tracks = []
        self._ids = _Identities(self.min_iou)
