"""Face tracking in videos, keyframe reuse and quiet native libraries."""

import subprocess
import sys

import numpy as np
import pytest

from rtatl_sdk.contract import geometry
from rtatl_sdk.errors import InputError
from rtatl_sdk.face.pipeline import Face
from rtatl_sdk.face.tracking import BOX_FROM_LANDMARKS, FaceTracker, box_from_landmarks, looks_like_a_face
from rtatl_sdk.results import Box
from rtatl_sdk.stream.temporal import KeyframeReuse, ReuseConfig
from tests.helpers import REPO, mean_face, pan_clip


def _face(pts: np.ndarray, score: float = 0.99) -> Face:
    aligned = geometry.AlignedFace(np.zeros((200, 200, 3), np.uint8), pts + geometry.CENTRE_CROP_OFFSET, np.eye(2, 3))
    return Face(box_from_landmarks(pts, score), np.zeros((478, 3)), pts, aligned)


def test_box_from_landmarks_follows_the_measured_relation():
    pts = mean_face() * 2 + 100
    b = box_from_landmarks(pts, 0.9)
    lo, hi = pts.min(0), pts.max(0)
    s = max(hi - lo)
    assert b.w == pytest.approx(BOX_FROM_LANDMARKS[2] * s) and b.h == pytest.approx(BOX_FROM_LANDMARKS[3] * s)
    assert b.y + b.h / 2 == pytest.approx((lo[1] + hi[1]) / 2 + BOX_FROM_LANDMARKS[1] * s)
    assert b.y < lo[1] and b.score == 0.9  # the detector's box takes in the forehead the 68 points leave out


def test_a_face_check_refuses_upside_down_collapsed_and_jumping_faces():
    pts = mean_face()
    assert looks_like_a_face(_face(pts), None)
    assert not looks_like_a_face(_face(pts * [1, -1]), None)  # mouth above the eyes
    assert not looks_like_a_face(_face(np.full_like(pts, 50.0)), None)  # collapsed to a point
    assert not looks_like_a_face(_face(pts * 2), _face(pts))  # twice the size one frame later
    assert looks_like_a_face(_face(pts * 1.1), _face(pts))


class _Pipeline:
    """A stand-in face pipeline: the detector finds ``boxes[frame]``; the Landmarker finds a face
    in a box unless the frame is in ``blind`` (a lost track). Counts what ran."""

    def __init__(self, boxes, blind=()):
        self.boxes, self.blind, self.calls = boxes, set(blind), []
        self.detector = self.landmarker = self
        self.frame = 0
        self.sessions: list[_Session] = []

    def detect(self, bgr):
        self.calls.append(("detect", self.frame))
        return self.boxes(self.frame)

    def session(self):
        self.sessions.append(_Session(len(self.sessions)))
        return self.sessions[-1]

    def face_in_box(self, bgr, box, session=None):
        if session is not None:
            assert not session.closed, "a closed session was used"
            session.frames.append(self.frame)
        if self.frame in self.blind:
            return None
        s = box.h / BOX_FROM_LANDMARKS[3]
        cx, cy = box.x + box.w / 2, box.y + box.h / 2 - BOX_FROM_LANDMARKS[1] * s
        p = mean_face()
        lo, hi = p.min(0), p.max(0)
        pts = (p - (lo + hi) / 2) * s / max(hi - lo) + [cx, cy]
        return _face(pts, box.score)


class _Session:
    """A stand-in video-mode Landmarker: which frames it saw, whether it was closed."""

    def __init__(self, number):
        self.number, self.frames, self.closed = number, [], False

    def close(self):
        self.closed = True


def _run(tracker, pipe, n):
    counts = []
    for i in range(n):
        pipe.frame = i
        counts.append(len(tracker(np.zeros((8, 8, 3), np.uint8))))
    return counts, [f for what, f in pipe.calls if what == "detect"]


def test_detector_runs_every_k_frames_and_when_a_track_is_lost():
    one = lambda i: [Box(x=100 + i, y=100, w=60, h=80, score=0.99)]  # noqa: E731
    pipe = _Pipeline(one, blind={7})
    counts, detected = _run(FaceTracker(pipe, detect_every=5), pipe, 14)
    assert detected == [0, 5, 7, 8, 13]  # first frame, every 5, the frame a track was lost, the next (no face), 5 on
    assert counts == [1] * 7 + [0] + [1] * 6


def test_no_face_means_detection_on_every_frame_and_a_face_is_found_on_its_first_frame():
    appears = lambda i: [] if i < 4 else [Box(x=50, y=50, w=60, h=80, score=0.95)]  # noqa: E731
    pipe = _Pipeline(appears)
    counts, detected = _run(FaceTracker(pipe, detect_every=10), pipe, 8)
    assert counts == [0, 0, 0, 0, 1, 1, 1, 1]
    assert detected == [0, 1, 2, 3, 4]


def test_detection_frames_end_tracks_no_box_covers_and_add_new_faces():
    boxes = lambda i: [Box(x=10, y=10, w=60, h=80, score=0.9)] if i < 3 else [Box(x=300, y=10, w=60, h=80, score=0.9)]  # noqa: E731
    pipe = _Pipeline(boxes)
    tracker = FaceTracker(pipe, detect_every=3)
    counts, detected = _run(tracker, pipe, 4)
    assert detected == [0, 3] and counts == [1, 1, 1, 1]
    assert tracker.faces[0].box.x == pytest.approx(300, abs=5)  # the old face ended, the new one tracked
    # each track had its own video-mode Landmarker from its second frame: the first followed frames 1-3
    # (its face ended at 3's detection), the second face was found at 3 (image mode) and has one unused yet
    first, second = pipe.sessions
    assert first.frames == [1, 2, 3] and first.closed
    assert second.frames == [] and not second.closed
    tracker.close()
    assert second.closed and tracker.faces == []


def test_a_lost_track_closes_its_session_and_the_face_found_again_gets_a_new_one():
    pipe = _Pipeline(lambda i: [Box(x=100 + i, y=100, w=60, h=80, score=0.99)], blind={4})
    _run(FaceTracker(pipe, detect_every=10), pipe, 7)
    # frame 4: the track is lost and the detector's box finds nothing either (image mode: no session);
    # frame 5 finds the face again, its new session follows it on frame 6
    assert [s.frames for s in pipe.sessions] == [[1, 2, 3, 4], [6]]
    assert [s.closed for s in pipe.sessions] == [True, False]
    still = _Pipeline(lambda i: [Box(x=100 + i, y=100, w=60, h=80, score=0.99)])
    counts, _ = _run(FaceTracker(still, detect_every=10, video_mode=False), still, 3)
    assert counts == [1, 1, 1] and still.sessions == []  # image mode: no sessions


def test_track_ids_continue_tracks_and_come_back_to_a_face_found_again_where_it_was():
    from rtatl_sdk.face.tracking import MAX_MISSED, _Identities

    ids = _Identities(0.3)
    a, a_moved, far = (100, 100, 60, 80), (104, 101, 60, 80), (400, 100, 60, 80)
    assert ids.assign([None], [a]) == [0]
    assert ids.assign([None, None], [a_moved, far]) == [0, 1]  # found anew each frame: IoU frame to frame
    assert ids.assign([0], [far]) == [0]  # a continuing track keeps its id wherever its box went...
    assert ids.assign([0, None], [far, a]) == [0, 2]  # ...and a face at a takes no ended id (1 was last seen far)
    for _ in range(MAX_MISSED):
        assert ids.assign([], []) == []
    assert ids.assign([None], [a]) == [2]  # 2 was last seen MAX_MISSED frames ago: found again
    for _ in range(MAX_MISSED + 1):
        ids.assign([], [])
    assert ids.assign([None], [a]) == [3]  # one frame more: a new person


def test_the_tracker_gives_each_face_its_id_and_starts_again_from_zero_after_close():
    pipe = _Pipeline(lambda i: [Box(x=100 + i, y=100, w=60, h=80, score=0.99),
                                Box(x=400, y=100, w=60, h=80, score=0.99)], blind={4})
    tracker = FaceTracker(pipe, detect_every=10)
    seen = []
    for i in range(7):
        pipe.frame = i
        seen.append([tid for tid, _ in tracker(np.zeros((8, 8, 3), np.uint8))])
    # frame 4: both tracks lost (the Landmarker is blind) and no face found; frame 5 finds both
    # again where they were: the same ids, left to right
    assert seen == [[0, 1]] * 4 + [[]] + [[0, 1]] * 2
    tracker.close()
    pipe.frame = 0
    assert [tid for tid, _ in tracker(np.zeros((8, 8, 3), np.uint8))] == [0, 1]


def test_two_tracks_on_one_face_become_one_and_detection_is_rerun():
    two = lambda i: [Box(x=100, y=100, w=60, h=80, score=0.9), Box(x=104, y=102, w=60, h=80, score=0.9)] if i == 0 else \
        [Box(x=100, y=100, w=60, h=80, score=0.9)]  # noqa: E731
    pipe = _Pipeline(two)
    counts, detected = _run(FaceTracker(pipe, detect_every=10), pipe, 3)
    assert counts == [2, 1, 1] and detected == [0, 1]  # frame 1: a duplicate ended (lost), so the detector ran


def test_detect_every_one_is_per_frame_detection_and_zero_is_refused():
    pipe = _Pipeline(lambda i: [Box(x=10, y=10, w=60, h=80, score=0.9)])
    _, detected = _run(FaceTracker(pipe, detect_every=1), pipe, 4)
    assert detected == [0, 1, 2, 3] and pipe.sessions == []  # stills: image mode, no sessions
    with pytest.raises(ValueError, match="detect_every"):
        FaceTracker(pipe, detect_every=0)


class _Crop:
    def __init__(self, pts, img):
        self._pts, self._img = pts, img

    def crop_landmarks(self):
        return self._pts

    def crop(self):
        return self._img


def test_keyframe_reuse_answers_unchanged_faces_and_reinfers_changed_or_old_ones():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (192, 192, 3), np.uint8)
    pts = mean_face()
    calls = []

    def infer(faces):
        calls.append(len(faces))
        return np.full((len(faces), 3), float(len(calls)))

    reuse = KeyframeReuse(ReuseConfig(max_shift=1.0, max_pixel=3.0, max_age=2))
    a = _Crop(pts, img)
    out = [reuse([a], [0], infer)[0][0] for _ in range(4)]
    assert out == [1.0, 1.0, 1.0, 2.0] and calls == [1, 1]  # reused twice (max_age), then inferred again
    shift = np.zeros_like(pts)
    shift[-1, 1] = 1.5
    moved = _Crop(pts + shift, img)  # one landmark 1.5 px away
    assert reuse([moved], [0], infer)[0][0] == 3.0
    brighter = _Crop(pts + shift, np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8))
    assert reuse([brighter], [0], infer)[0][0] == 4.0
    two = reuse([brighter, a], [0, 1], infer)  # track 1 is new: only it goes to the model
    assert [p[0] for p in two] == [4.0, 5.0] and calls[-1] == 1
    assert reuse.seen == 8 and reuse.reused == 3
    with pytest.raises(ValueError, match="max_age"):
        ReuseConfig(max_age=0)


# --- real media ------------------------------------------------------------------------------
def _largest_decisions(frames):
    return [np.array([r.present for r in max(f.faces, key=lambda x: x.box.w).aus.values()]) if f.faces else None for f in frames]


@pytest.mark.media
def test_tracking_finds_the_faces_per_frame_detection_finds(default_det, media, tmp_path):
    for clip in (media / "noface_face.mov", pan_clip(media / "multi_face.jpg", tmp_path / "pan.mp4")):
        per_frame = list(default_det.detect_video(clip, detect_every=1))
        tracked = list(default_det.detect_video(clip, detect_every=10))
        stats = default_det.last_stream
        a, b = [len(f.faces) for f in per_frame], [len(f.faces) for f in tracked]
        assert sum(x == y for x, y in zip(a, b)) >= 0.97 * len(a), (clip.name, a, b)
        assert b.index(max(b)) <= a.index(max(a)) + 2  # every face found within two frames of detection finding it
        assert stats["detections"] < 0.7 * stats["frames"]  # the detector skipped frames
    assert max(b) == 5 and len({f.track_id for fr in tracked for f in fr.faces}) == 5


@pytest.mark.media
def test_tracking_and_reuse_keep_au_decisions_of_per_frame_detection(default_det, media):
    clip = media / "single_face.mp4"
    ref = _largest_decisions(default_det.detect_video(clip, detect_every=1))
    tracked = _largest_decisions(default_det.detect_video(clip))
    default_det.reuse = ReuseConfig()
    try:
        reused = _largest_decisions(default_det.detect_video(clip))
        stats = default_det.last_stream
    finally:
        default_det.reuse = None
    for got in (tracked, reused):
        assert np.mean([x == y for x, y in zip(got, ref)]) >= 0.98
    assert stats["reused"] > 0.2 * stats["faces"]


@pytest.mark.media
def test_video_mode_landmarks_agree_with_image_mode_on_a_real_clip(default_det, media):
    """landmark_tracking (the default): each track's Landmarker runs in MediaPipe's video mode.
    Against image mode on every frame (the same tracking otherwise), the 68 points stay within
    a pixel or two and the AU decisions agree on 98 % of frames."""
    from rtatl_sdk import AUDetector

    clip = media / "single_face.mp4"
    video = list(default_det.detect_video(clip))
    with AUDetector(landmark_tracking=False) as image_mode:
        image = list(image_mode.detect_video(clip))
    both = [(a.faces[0], b.faces[0]) for a, b in zip(video, image) if a.faces and b.faces]
    assert len(both) >= 0.95 * len(video)
    err = np.array([np.abs(a.landmarks - b.landmarks).mean() / b.box.w for a, b in both])  # share of face width
    assert np.median(err) < 0.01 and err.max() < 0.05, (np.median(err), err.max())
    agree = np.mean([[x.present == y.present for x, y in zip(a.aus.values(), b.aus.values())] for a, b in both])
    assert agree >= 0.98, agree


@pytest.mark.media
def test_points_read_from_the_c_result_equal_mediapipes_own_objects_bit_for_bit(media):
    """The Landmarker's points are read straight from MediaPipe's C result: the same floats as its
    public objects give, in image mode and in video mode (two sessions fed the same crops), and
    None on a crop with no face."""
    import cv2
    import mediapipe as mp

    from rtatl_sdk.face import FacePipeline
    from rtatl_sdk.face.landmarker import _points_reader, _public

    read = _points_reader()
    assert read is not None  # this MediaPipe is laid out as the reader expects
    cap = cv2.VideoCapture(str(media / "single_face.mp4"))
    frames = [cap.read()[1] for _ in range(12)]
    with FacePipeline() as pipe:
        lmk = pipe.landmarker
        assert lmk._read is not None and all(hasattr(lmk._landmarker, a) for a in ("_lib", "_handle"))  # not the fallback
        m = lmk.crop_matrix(*pipe.process(frames[0])[0].box.square(lmk.crop_factor))
        crops = [np.ascontiguousarray(cv2.warpAffine(f, m, (lmk.crop_size,) * 2)[:, :, ::-1]) for f in frames]
        crops.append(np.zeros_like(crops[0]))
        fast, public = lmk.session(), lmk.session()
        handed_off = []  # calls MediaPipe's dispatcher ran in its own thread for the fast path's graphs
        for graph in (lmk._landmarker, fast._graph):
            submit = graph._lib._executor.submit
            graph._lib._executor.submit = lambda *a, _s=submit, **k: handed_off.append(a[0]) or _s(*a, **k)
        n = 0
        for rgb in crops:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
            a, c = read(lmk._landmarker, image, None), fast.points(image, read)
            assert not handed_off  # the fast path calls MediaPipe's C functions in this thread
            b, d = _public(lmk._landmarker, image, None), public.points(image, _public)
            handed_off.clear()
            for x, y in ((a, b), (c, d)):
                assert (x is None and y is None) or (x.dtype == np.float64 and np.array_equal(x, y))
            n += a is not None
        fast.close()
        public.close()
    assert n == 12 and a is None  # every face frame had points; the blank crop none


@pytest.mark.media
def test_a_video_runs_in_named_threads_and_the_landmarker_runs_in_the_face_thread(default_det, media):
    """While a video is read, the decoder and the face thread carry the SDK's names, and the
    tracked face's Landmarker is called from the face thread (not the caller's, not MediaPipe's
    dispatcher); the threads are gone once the video is done."""
    import threading
    import time

    from rtatl_sdk.face import landmarker

    seen, calls = set(), []
    points = landmarker.LandmarkSession.points

    def spy(self, image, read):
        calls.append(threading.current_thread().name)
        return points(self, image, read)

    landmarker.LandmarkSession.points = spy
    try:
        for _ in default_det.detect_video(media / "single_face.mp4", max_frames=8):
            seen |= {t.name.split("_")[0] for t in threading.enumerate()}
    finally:
        landmarker.LandmarkSession.points = points
    assert {"rtatl-decode", "rtatl-face-thread"} <= seen
    assert len(calls) == 7 and all(c.startswith("rtatl-face-thread") for c in calls)  # frames 2-8 follow the face
    deadline = time.monotonic() + 5  # the decoder ends just after handing over its last frame
    while any(t.name.startswith(("rtatl-decode", "rtatl-face-thread")) for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.01)


@pytest.mark.media
def test_several_tracks_landmarked_in_threads_equal_one_after_another(default_det, media, tmp_path, monkeypatch):
    """Four tracked faces: their video-mode Landmarkers run in two threads (LANDMARK_THREADS); the
    results are those of running them one after another, face for face."""
    from rtatl_sdk.face import tracking

    clip = pan_clip(media / "multi_face.jpg", tmp_path / "pan.mp4")
    threaded = list(default_det.detect_video(clip, max_frames=12))
    monkeypatch.setattr(tracking, "LANDMARK_THREADS", 1)
    serial = list(default_det.detect_video(clip, max_frames=12))
    assert sum(len(f.faces) for f in threaded) >= 4 * 12
    for a, b in zip(threaded, serial):
        assert [f.track_id for f in a.faces] == [f.track_id for f in b.faces]
        for fa, fb in zip(a.faces, b.faces):
            assert np.array_equal(fa.landmarks, fb.landmarks) and fa.probabilities() == fb.probabilities()


def test_bad_detection_period_is_an_input_error(det, media):
    with pytest.raises(InputError, match="detect_every"):
        next(det.detect_video(media / "single_face.mp4", detect_every=0))


def test_cli_is_quiet_by_default_and_verbose_shows_native_lines(media, tmp_path):
    cmd = [sys.executable, "-m", "rtatl_sdk.apps.cli", str(media / "single_face.jpg"), "--out", str(tmp_path / "r.csv"), "--quiet"]
    quiet = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = subprocess.run(cmd + ["--verbose"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and "TensorFlow Lite" in loud.stderr


@pytest.mark.media
def test_openvino_backend_matches_onnxruntime_on_real_faces(default_det, media):
    """OpenVINO against onnxruntime on the same faces. Compared where the two must agree on every
    CPU: the fp32 graph (both runtimes compute the same float arithmetic: parity to 1e-3) and the
    int8 graph's decisions away from the threshold. The int8 probabilities themselves are not
    compared: each runtime picks its own int8 kernels per CPU (VNNI or not), and one quantisation
    step of a logit moves a probability by up to ~0.07 (0.050 seen on an AVX2 EPYC, 0.075 on an
    AVX-512/VNNI one), so a bound on them tests the CPU, not the backend."""
    pytest.importorskip("openvino")
    from rtatl_sdk import AUDetector

    fp32 = default_det.model_path.with_name("model.onnx")
    assert fp32.is_file(), fp32
    ref32 = AUDetector(fp32)
    ov32 = AUDetector(fp32, backend="openvino")
    ov = AUDetector(default_det.model_path, backend="openvino")
    try:
        assert ov.engine.providers == ["OpenVINO CPU"]
        # the network's raw scores (the card's calibration would multiply any difference by its slope)
        a = [{k: r.score for k, r in f.aus.items()} for f in ref32.detect(media / "multi_face.jpg")]
        b = [{k: r.score for k, r in f.aus.items()} for f in ov32.detect(media / "multi_face.jpg")]
        assert len(a) == len(b) == 5
        # same float arithmetic, other kernels (Winograd convolutions, summation order): 0.0028 seen
        assert max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x) < 0.01
        qa, qb = default_det.detect(media / "multi_face.jpg"), ov.detect(media / "multi_face.jpg")
        assert len(qa) == len(qb) == 5
        thr = dict(zip(default_det.aus, default_det.thresholds))
        compared = 0
        for fa, fb in zip(qa, qb):
            for k, r in fa.aus.items():
                if abs(r.score - thr[k]) > 0.1:  # beyond what int8 kernels can move
                    compared += 1
                    assert r.present == fb.aus[k].present, (k, r.score, fb.aus[k].score)
        assert compared >= 50  # most of the 5 x 18 decisions are clear of their threshold
    finally:
        ov.close()
        ov32.close()
        ref32.close()
    with pytest.raises(InputError, match="backend"):
        AUDetector(default_det.model_path, backend="tflite")
