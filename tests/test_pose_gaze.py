"""Head pose and gaze in OpenFace 2.2's columns and units, on real faces."""

import math

import numpy as np
import pytest

from rtatl_sdk.face import pose as P

DEG = math.pi / 180


@pytest.fixture(scope="module")
def frames(media):
    """Frames of WolfgangLanger_Pexels.mp4: 60 (eyes shut, laughing), 160 (eyes open, looking up-left)."""
    from rtatl_sdk.stream.video import iter_frames

    return {fr.index: fr.image for fr in iter_frames(media / "WolfgangLanger_Pexels.mp4", max_frames=161)
            if fr.index in (60, 160)}


def _one(det, img, **kw):
    faces = det.detect(img, **kw)
    assert len(faces) == 1
    return faces[0]


def test_the_face_model_is_read_from_the_landmarker_file_in_mm():
    from rtatl_sdk import store

    m = P.face_model(str(store.resolve(store.FACE_LANDMARKER)))
    assert m.points.shape == (468, 3) and len(m.ids) == 33 and 0.9 < m.weights.sum() < 1.2
    right, left = m.points[P.RIGHT_EYE["outer"]], m.points[P.LEFT_EYE["outer"]]
    assert np.allclose(right * [-1, 1, 1], left, atol=1e-4)  # symmetric about x = 0
    assert 80 < left[0] - right[0] < 100  # outer eye corners ~89 mm apart: millimetres, x to the image's right
    assert m.points[1, 2] < m.points[33, 2]  # the nose tip is nearer the camera (z into the head)


def _geometry(points: np.ndarray, ids, weights) -> bytes:
    """A GeometryPipelineMetadata message (the fields ``pose.parse_geometry`` reads), encoded."""
    import struct

    def varint(v: int) -> bytes:
        out = b""
        while True:
            out += bytes([(v & 0x7F) | (0x80 if v > 0x7F else 0)])
            v >>= 7
            if not v:
                return out

    def field(num: int, payload: bytes) -> bytes:
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    verts = b"".join(varint(3 << 3 | 5) + struct.pack("<f", float(x)) for p in points for x in (*p, 0.0, 0.0))
    basis = b"".join(field(2, varint(1 << 3) + varint(i) + varint(2 << 3 | 5) + struct.pack("<f", w)) for i, w in zip(ids, weights))
    return field(1, verts) + basis


@pytest.mark.parametrize("case,why", [("cut", "no readable face geometry"), ("ids", "landmark ids outside 0-467"),
                                      ("nan", "points that are not finite"), ("weights", "weights that are negative")])
def test_a_landmarker_file_with_garbage_face_geometry_is_refused_by_name(case, why, tmp_path):
    import zipfile

    from rtatl_sdk.errors import ModelFileError

    pts, ids, w = np.zeros((468, 3)), list(range(33)), [1 / 33] * 33
    assert P.parse_geometry(_geometry(pts, ids, w)).points.shape == (468, 3)  # the encoder writes what is read
    if case == "ids":
        ids[5] = 9999
    if case == "nan":
        pts[7, 1] = np.nan
    if case == "weights":
        w[3] = -1.0
    data = _geometry(pts, ids, w)
    if case == "cut":
        data = data[: len(data) // 2 + 1]
    task = tmp_path / f"{case}.task"
    with zipfile.ZipFile(task, "w") as z:
        z.writestr(P.GEOMETRY_MEMBER, data)
    with pytest.raises(ModelFileError, match=why) as exc:
        P.face_model(str(task))
    assert str(task) in str(exc.value)


def test_euler_angles_round_trip_through_the_rotation_matrix():
    from rtatl_sdk.io.draw import rotation_matrix

    for angles in ((0.1, -0.4, 0.3), (-0.5, 0.2, -1.0), (0.0, 0.0, 0.0)):
        assert np.allclose(P.euler_xyz(rotation_matrix(*angles)), angles, atol=1e-9)


@pytest.mark.media
def test_a_face_looking_at_the_camera_has_small_yaw_and_gaze(det, media):
    f = _one(det, media / "single_face.jpg")
    assert abs(f.pose.ry) < 10 * DEG and abs(f.gaze.angle_x) < 10 * DEG and abs(f.pose.rx) < 10 * DEG
    assert 250 < f.pose.tz < 600  # a portrait: the head some 40 cm from the camera (mm)
    assert np.isclose(np.linalg.norm(f.gaze.eye0), 1) and f.gaze.eye0[2] < -0.9  # towards the camera: -z


@pytest.mark.media
def test_a_mirrored_face_negates_yaw_roll_and_horizontal_gaze(det, media):
    """On the portrait, and as the median over every 15th frame of a clip of strong expressions
    and gaze (the Landmarker's iris points are not exactly mirror-symmetric; the worst frame of
    the clip is some 11 degrees off)."""
    import cv2

    from rtatl_sdk.stream.video import iter_frames

    def errors(img):
        a, b = _one(det, img), _one(det, np.ascontiguousarray(img[:, ::-1]))
        gaze = abs(a.gaze.angle_x + b.gaze.angle_x) if a.gaze and b.gaze else None
        return abs(a.pose.ry + b.pose.ry), abs(a.pose.rz + b.pose.rz), gaze, abs(a.pose.rx - b.pose.rx)

    portrait = errors(cv2.imread(str(media / "single_face.jpg")))
    assert max(portrait) < 3 * DEG, np.degrees(portrait)  # pitch (the last) does not change
    clip = [errors(fr.image) for fr in iter_frames(media / "WolfgangLanger_Pexels.mp4") if fr.index % 15 == 0]
    gaze = [e[2] for e in clip if e[2] is not None]
    assert len(gaze) >= 15  # eyes open on most of the sampled frames
    assert np.median([e[0] for e in clip]) < 3 * DEG and np.median([e[1] for e in clip]) < 3 * DEG
    assert np.median(gaze) < 3 * DEG, np.degrees(np.median(gaze))


@pytest.mark.media
def test_turning_the_image_by_15_degrees_moves_roll_by_15_degrees(det, media):
    import cv2

    img = cv2.imread(str(media / "single_face.jpg"))
    h, w = img.shape[:2]
    base = _one(det, img).pose.rz
    for angle in (15, -15):  # OpenCV: positive = counter-clockwise, which is roll < 0 here
        turned = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h),
                                borderMode=cv2.BORDER_REPLICATE)
        moved = _one(det, turned).pose.rz - base
        assert abs(moved + angle * DEG) < 3 * DEG, np.degrees(moved)


@pytest.mark.media
def test_the_same_face_in_a_large_frame_and_cropped_has_the_same_rotation(media):
    """The pose is of the face in the frame: the crop with its own camera (principal point moved
    by the crop's offset) and the large frame agree; so do a centred face with default cameras."""
    import cv2

    from rtatl_sdk import AUDetector

    img = cv2.imread(str(media / "multi_face.jpg"))
    h, w = img.shape[:2]
    f = P.default_focal_length(img.shape)
    x0, y0, x1, y1 = 480, 180, 820, 500  # around the two faces on the right
    with AUDetector(focal_length=f) as big_det, \
            AUDetector(focal_length=f, principal_point=(w / 2 - x0, h / 2 - y0)) as crop_det:
        big = {round(fa.box.x - x0): fa.pose for fa in big_det.detect(img) if x0 < fa.box.x < x1 - fa.box.w}
        crop = {round(fa.box.x): fa.pose for fa in crop_det.detect(np.ascontiguousarray(img[y0:y1, x0:x1]))}
    assert len(big) == 2 and len(crop) == 2
    for (bx, pb), (cx, pc) in zip(sorted(big.items()), sorted(crop.items())):
        assert abs(bx - cx) < 10
        for u, v in ((pb.rx, pc.rx), (pb.ry, pc.ry), (pb.rz, pc.rz)):
            assert abs(u - v) < 3 * DEG, (np.degrees(u), np.degrees(v))
        assert abs(pb.tz - pc.tz) < 0.05 * pb.tz


@pytest.mark.media
def test_eyes_shut_or_outside_the_frame_give_no_gaze_but_a_pose(det, media, frames):
    import cv2

    shut = _one(det, frames[60])
    assert shut.gaze is None and shut.pose is not None
    img = cv2.imread(str(media / "single_face.jpg"))
    f = _one(det, img)
    cut = int(f.landmarks[36:42, 0].mean())  # through the middle of the image-left eye
    part = _one(det, np.ascontiguousarray(img[:, cut:]))
    assert part.gaze is None and part.pose is not None


@pytest.mark.media
def test_pose_and_gaze_columns_in_openface_units(media, frames, tmp_path):
    import csv

    import cv2

    from rtatl_sdk.apps.cli import main
    from rtatl_sdk.io.rows import GAZE_COLUMNS, POSE_COLUMNS

    cv2.imwrite(str(tmp_path / "shut.png"), frames[60])
    out = tmp_path / "r.csv"
    assert main([str(media / "single_face.jpg"), str(tmp_path / "shut.png"), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(out.open(newline="")))
    header = list(rows[0])
    assert header[11:25] == GAZE_COLUMNS + POSE_COLUMNS  # OpenFace's names, after the base columns
    smile, shut = rows
    assert 250 < float(smile["pose_Tz"]) < 600  # mm
    assert all(abs(float(smile[c])) < 0.5 for c in ("pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x"))  # radians
    g0 = np.array([float(smile[f"gaze_0_{a}"]) for a in "xyz"])
    assert abs(np.linalg.norm(g0) - 1) < 1e-3
    assert all(shut[c] == "" for c in GAZE_COLUMNS) and all(shut[c] != "" for c in POSE_COLUMNS)


@pytest.mark.media
def test_smoothing_applies_to_pose_and_gaze_and_calibration_does_not(model_path, media):
    from rtatl_sdk import AUDetector

    clip = media / "single_face.mp4"

    def series(**kw):
        with AUDetector(model_path, reuse=False, **kw) as d:
            return [(fr.faces[0].pose.ry, fr.faces[0].pose.tz) for fr in d.detect_video(clip, max_frames=30)]

    raw, smooth, calibrated = series(), series(smoothing=0.2), series(calibration=True)
    assert calibrated == raw  # the neutral baseline shifts probabilities only
    jitter = lambda s: float(np.abs(np.diff([v[0] for v in s])).mean())  # noqa: E731
    assert jitter(smooth) < 0.6 * jitter(raw)
    assert smooth[0] == raw[0]  # an EMA starts at the first value



def test_default_camera_is_openfaces_and_a_camera_that_is_not_finite_is_refused():
    """OpenFace 2.2's default camera: the mean of 500 w / 640 and 500 h / 480 px for both axes
    (on 640x360 video 422 px, not 500: a 1.18x longer focal length puts the head 1.18x too far)."""
    from rtatl_sdk import DetectorOptions
    from rtatl_sdk.errors import InputError
    from rtatl_sdk.face.pose import camera_matrix

    k = camera_matrix((360, 640, 3))
    assert k[0, 0] == k[1, 1] == pytest.approx((500 + 375) / 2) and (k[0, 2], k[1, 2]) == (320, 180)
    assert camera_matrix((480, 640))[0, 0] == pytest.approx(500)
    for bad in ({"focal_length": float("inf")}, {"principal_point": (float("nan"), 3.0)}):
        with pytest.raises(InputError):
            DetectorOptions.make(**bad)
