"""Head pose and gaze of a face in the frame's camera, in OpenFace 2.2's conventions and units.

Head pose: the rigid 3D face model MediaPipe's Landmarker ships (the canonical mesh of
``face_landmarker.task``, in cm, read from the file; its 33 stable "Procrustes" landmarks and
their weights) is fitted to the face's landmarks in frame pixels with ``cv2.solvePnP``. The
camera is a pinhole with focal length ``(500 * width / 640 + 500 * height / 480) / 2`` pixels and its principal point at
the frame's centre unless given (OpenFace's default; ``DetectorOptions.focal_length`` /
``principal_point``). So the pose is of the face in the frame, wherever it is in it.

Conventions (OpenFace 2.2's ``pose_*`` and ``gaze_*`` columns):

- camera coordinates: x to the image's right, y down, z forward (away from the camera), mm;
- ``pose_Tx, pose_Ty, pose_Tz``: the head's position (the canonical model's origin, between the
  ears behind the nose bridge) in mm;
- ``pose_Rx, pose_Ry, pose_Rz``: pitch, yaw, roll in radians, R = Rx(pitch) Ry(yaw) Rz(roll)
  taking the face model (x right, y down, z into the head) to the camera; a face looking into
  the camera is 0, 0, 0; yaw > 0 turns the nose to the image's left, pitch > 0 tilts the face
  down, roll > 0 turns it clockwise in the image;
- gaze: per eye a unit vector from the eyeball's centre through the iris centre (``gaze_0`` the
  eye on the image's left, the person's right eye; ``gaze_1`` the other), and
  ``gaze_angle_x = atan2(g.x, -g.z)``, ``gaze_angle_y = atan2(g.y, -g.z)`` of their mean: 0, 0
  looking into the camera, x > 0 looking towards the image's right, y > 0 looking down.

The gaze is geometric, not learned: each eyeball is a 12 mm sphere placed by the head pose
6 mm behind the middle of its eye corners; the camera ray through the iris centre (the mean of
MediaPipe's five refined iris points) meets it at the iris. Its accuracy is that of the iris points and the
eyeball placement (a few degrees; no per-person calibration).

Missing values, never guessed: ``pose`` is None when the face is too small (inter-ocular
distance under ``MIN_IOD`` pixels) or the fit fails; ``gaze`` is None also when an eye is closed
(eye opening under ``MIN_EYE_OPENING`` of the eye's width), when an eye's corners or iris lie
outside the frame, or when the mesh has no iris points.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ModelFileError

#: the eyeball's radius, mm (adult human eyes: 11.5-12.5)
EYEBALL_RADIUS = 12.0
#: how far the eyeball's centre lies behind the middle of the eye corners, mm (an anatomical
#: estimate, not fitted: the cornea's apex some 13 mm in front of the centre, the corners ~7 mm behind it)
EYEBALL_BEHIND_CORNERS = 6.0
#: faces whose eyes are closer than this many pixels get no pose (landmark noise dominates)
MIN_IOD = 12.0
#: an eye opening (lid to lid) under this share of its width counts as closed: no gaze
MIN_EYE_OPENING = 0.12
#: MediaPipe mesh indices: eye corners (outer, inner), upper and lower lid, iris centre
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": 159, "lower": 145, "iris": 468}  # image left
LEFT_EYE = {"outer": 263, "inner": 362, "upper": 386, "lower": 374, "iris": 473}  # image right
#: the iris centre is the mean of its five refined points (centre and four on its rim)
IRIS_POINTS = 5
GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


@dataclass(frozen=True)
class FaceModel:
    """The rigid face model: 468 points in mm in the OpenFace model frame (x right, y down, z into
    the head), and the stable landmarks (ids, weights) the fit uses."""

    points: np.ndarray
    ids: np.ndarray
    weights: np.ndarray


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def _fields(b: bytes):
    """(field number, wire type, value) of a protobuf message (the wire types the file uses)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield num, wire, v


def parse_geometry(data: bytes) -> FaceModel:
    """MediaPipe's GeometryPipelineMetadata: canonical_mesh (field 1, a Mesh3d whose vertex_buffer,
    field 3, holds x y z u v per vertex) and procrustes_landmark_basis (field 2: landmark_id, weight)."""
    top = list(_fields(data))
    mesh = next(v for n, w, v in top if n == 1 and w == 2)
    verts = np.frombuffer(b"".join(v for n, w, v in _fields(mesh) if n == 3 and w == 5), "<f4")
    verts = verts.reshape(-1, 5)[:, :3].astype(np.float64)
    ids, weights = [], []
    for n, w, v in top:
        if n == 2 and w == 2:
            d = {k: val for k, _, val in _fields(v)}
            ids.append(int(d.get(1, 0)))
            weights.append(float(np.frombuffer(d[2], "<f4")[0]) if 2 in d else 0.0)
    # canonical: x right, y up, z towards the viewer, cm -> OpenFace model frame, mm
    points = verts * np.array([10.0, -10.0, -10.0])
    return FaceModel(points, np.asarray(ids), np.asarray(weights))


@lru_cache(maxsize=4)
def face_model(task_path: str) -> FaceModel:
    """The face model carried by a ``face_landmarker.task`` file (a zip archive)."""
    try:
        with zipfile.ZipFile(task_path) as z:
            data = z.read(GEOMETRY_MEMBER)
        model = parse_geometry(data)
    except (OSError, KeyError, ValueError, IndexError, StopIteration, zipfile.BadZipFile) as exc:  # IndexError: cut short
        raise ModelFileError(f"face landmarker {task_path}: no readable face geometry ({GEOMETRY_MEMBER}: "
                             f"{type(exc).__name__}: {exc})") from None
    if model.points.shape != (468, 3) or len(model.ids) < 6:
        raise ModelFileError(f"face landmarker {task_path}: face geometry of unexpected shape {model.points.shape}")
    bad = [why for why, ok in (("points that are not finite", np.isfinite(model.points).all()),
                               ("landmark ids outside 0-467", ((model.ids >= 0) & (model.ids < 468)).all()),
                               ("weights that are negative, not finite or all 0",
                                np.isfinite(model.weights).all() and (model.weights >= 0).all() and model.weights.sum() > 0))
           if not ok]
    if bad:
        raise ModelFileError(f"face landmarker {task_path}: its face geometry has {'; '.join(bad)}")
    return model


def default_focal_length(image_shape) -> float:
    """OpenFace 2.2's default camera (its ``SequenceCapture``): the mean of ``500 * w / 640`` and
    ``500 * h / 480`` pixels, used for both axes."""
    h, w = image_shape[:2]
    return (500.0 * w / 640.0 + 500.0 * h / 480.0) / 2.0


def camera_matrix(image_shape, focal_length: float | None = None, principal_point=None) -> np.ndarray:
    """3x3 intrinsics: focal ``default_focal_length`` px and the frame's centre unless given."""
    h, w = image_shape[:2]
    f = float(focal_length) if focal_length else default_focal_length(image_shape)
    cx, cy = principal_point if principal_point is not None else (w / 2.0, h / 2.0)
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def euler_xyz(r: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) with R = Rx(pitch) Ry(yaw) Rz(roll)."""
    yaw = float(np.arcsin(np.clip(r[0, 2], -1.0, 1.0)))
    pitch = float(np.arctan2(-r[1, 2], r[2, 2]))
    roll = float(np.arctan2(-r[0, 1], r[0, 0]))
    return pitch, yaw, roll


@dataclass(frozen=True)
class PoseFit:
    rotation: np.ndarray  #: 3x3, model -> camera
    translation: np.ndarray  #: (3,) mm


def fit_pose(mesh_px: np.ndarray, model: FaceModel, k: np.ndarray) -> PoseFit | None:
    """The head pose from the face's mesh in frame pixels (478 or 468 points), or None."""
    import cv2

    pts = np.asarray(mesh_px, np.float64)[:, :2]
    iod = float(np.hypot(*(pts[LEFT_EYE["outer"]] - pts[RIGHT_EYE["outer"]])))
    if not np.isfinite(pts[:468]).all() or iod < MIN_IOD:
        return None
    obj, img = model.points[model.ids], pts[model.ids]
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return None
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or float(tvec[2, 0]) <= 0:
        return None
    return PoseFit(cv2.Rodrigues(rvec)[0], tvec.reshape(3))


def _eye_gaze(pts: np.ndarray, eye: dict, fit: PoseFit, model: FaceModel, kinv: np.ndarray, image_shape) -> np.ndarray | None:
    h, w = image_shape[:2]
    p = {name: pts[i] for name, i in eye.items()}
    p["iris"] = pts[eye["iris"]:eye["iris"] + IRIS_POINTS].mean(0)
    if any(not (0 <= q[0] < w and 0 <= q[1] < h) for q in p.values()):
        return None  # an eye corner or the iris outside the frame
    width = float(np.hypot(*(p["outer"] - p["inner"])))
    if width <= 0 or float(np.hypot(*(p["upper"] - p["lower"]))) < MIN_EYE_OPENING * width:
        return None  # closed
    corners = (model.points[eye["outer"]] + model.points[eye["inner"]]) / 2
    centre = fit.rotation @ (corners + np.array([0.0, 0.0, EYEBALL_BEHIND_CORNERS])) + fit.translation
    ray = kinv @ np.array([p["iris"][0], p["iris"][1], 1.0])
    ray /= np.linalg.norm(ray)
    # the ray (from the camera) meets the sphere: |t ray - c|^2 = r^2, nearest root
    b = float(ray @ centre)
    disc = b * b - float(centre @ centre) + EYEBALL_RADIUS**2
    t = b - np.sqrt(disc) if disc > 0 else b  # a ray passing the sphere: its closest point
    g = t * ray - centre
    n = np.linalg.norm(g)
    return g / n if n > 0 else None


def gaze_vectors(mesh_px: np.ndarray, fit: PoseFit, model: FaceModel, k: np.ndarray, image_shape):
    """(gaze_0, gaze_1) unit vectors (image-left eye, image-right eye) or None (see the module's doc)."""
    pts = np.asarray(mesh_px, np.float64)[:, :2]
    if len(pts) < 478:
        return None
    kinv = np.linalg.inv(k)
    g0 = _eye_gaze(pts, RIGHT_EYE, fit, model, kinv, image_shape)
    g1 = _eye_gaze(pts, LEFT_EYE, fit, model, kinv, image_shape)
    if g0 is None or g1 is None:
        return None
    return g0, g1


def gaze_angles(g0: np.ndarray, g1: np.ndarray) -> tuple[float, float]:
    """OpenFace's gaze_angle_x, gaze_angle_y of the mean of both eyes' vectors."""
    g = (np.asarray(g0) + np.asarray(g1)) / 2
    return float(np.arctan2(g[0], -g[2])), float(np.arctan2(g[1], -g[2]))


def head_and_gaze(mesh_px: np.ndarray, landmarker_path, image_shape, focal_length=None, principal_point=None):
    """(``HeadPose``, ``Gaze``) of one face's mesh in the frame's camera, each None where it cannot
    be fitted: the one place a face's pose and gaze are built (the stream only smooths them)."""
    from ..results import Gaze, HeadPose

    model = face_model(str(landmarker_path))
    k = camera_matrix(image_shape, focal_length, principal_point)
    fit = fit_pose(mesh_px, model, k)
    if fit is None:
        return None, None
    rx, ry, rz = euler_xyz(fit.rotation)
    t = fit.translation
    head = HeadPose(tx=float(t[0]), ty=float(t[1]), tz=float(t[2]), rx=rx, ry=ry, rz=rz)
    eyes = gaze_vectors(mesh_px, fit, model, k, image_shape)
    if eyes is None:
        return head, None
    ax, ay = gaze_angles(*eyes)
    return head, Gaze(eye0=tuple(float(v) for v in eyes[0]), eye1=tuple(float(v) for v in eyes[1]), angle_x=ax, angle_y=ay)


__all__ = ["EYEBALL_RADIUS", "FaceModel", "PoseFit", "camera_matrix", "euler_xyz", "face_model", "fit_pose",
           "gaze_angles", "gaze_vectors", "head_and_gaze", "parse_geometry"]
