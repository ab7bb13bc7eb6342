"""OpenFace 2.2's CSV layouts, so scripts written for OpenFace read this toolkit's results unchanged.

Three layouts, as OpenFace 2.2 writes them (``RecorderCSV.cpp``; the wiki's Output-Format page):

* ``FeatureExtraction`` (a video, one face): one row per frame, ``frame`` from 1, ``face_id``,
  ``timestamp`` (``(frame - 1) / fps``), ``confidence`` (0-1), ``success`` (0/1), then the chosen
  groups; a frame without a face still has its row, ``success`` 0 and 0 in every other cell.
* ``FaceLandmarkVidMulti`` (a video, several faces): the same columns, one row per tracked face
  per frame, ``face_id`` the track.
* ``FaceLandmarkImg`` (a still): ``face, confidence``, then the groups; one row per face.

Groups in OpenFace's order and under its flag names: ``gaze`` (``gaze_0_x .. gaze_angle_y``),
``pose`` (``pose_Tx .. pose_Rz``), ``2Dfp`` (``x_0 .. x_67, y_0 .. y_67``, pixels), ``aus`` (the 17
``AUxx_r`` of OpenFace's intensity models: no AU28_r; then the 18 ``AUxx_c``). Groups this toolkit
does not compute are left out, as OpenFace's own flags leave them out: the 56 eye-region landmarks
OpenFace writes with its gaze (``eye_lmk_*``: its own eye model's points, which MediaPipe's mesh does
not define), the 3D landmarks (``-3Dfp``) and the PDM parameters (``-pdmparams``).

Every cell holds a number (0 where a value is missing, as OpenFace writes it), fixed decimals,
``\\n`` line ends. ``spaced=True`` writes ", " between fields, as the OpenFace 2.2.0 Windows binary
does (scripts that look up ``' AU45_r'`` need it); the default "," is the source builds'.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import InputError
from ..results import FaceAUs

#: OpenFace 2.2's AUs: intensity (regression) and occurrence (classification) models
AUS_R = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
AUS_C = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
#: the groups written, in OpenFace's column order, under its flag names (``-gaze`` ...)
GROUPS = ("gaze", "pose", "2Dfp", "aus")
#: OpenFace's groups this toolkit does not compute (refused by name rather than filled)
NOT_COMPUTED = {"3Dfp": "3D landmarks in mm (OpenFace's PDM reconstruction) are not computed",
                "pdmparams": "OpenFace's point distribution model parameters do not exist here",
                "hogalign": "OpenFace's HOG features and aligned faces are not written in this layout"}
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
LANDMARKS_2D = [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
AU_COLUMNS = [f"AU{a:02d}_r" for a in AUS_R] + [f"AU{a:02d}_c" for a in AUS_C]
_DECIMALS = {**dict.fromkeys(GAZE[:6], 6), **dict.fromkeys(GAZE[6:], 3), **dict.fromkeys(POSE[:3], 1),
             **dict.fromkeys(POSE[3:], 3), **dict.fromkeys(LANDMARKS_2D, 1), **dict.fromkeys(AU_COLUMNS, 2)}


def check_groups(groups) -> tuple[str, ...]:
    """The chosen groups in OpenFace's order; an unknown or uncomputed one is an InputError naming it."""
    out = []
    for g in groups:
        key = str(g).strip().lstrip("-")
        if key in NOT_COMPUTED:
            raise InputError(f"--openface-groups {g}", NOT_COMPUTED[key])
        if key not in GROUPS:
            raise InputError(f"--openface-groups {g}", f"is not one of {', '.join(GROUPS)}")
        out.append(key)
    if not out:
        raise InputError("--openface-groups", "give at least one group")
    return tuple(g for g in GROUPS if g in out)


def group_columns(groups) -> list[str]:
    cols = {"gaze": GAZE, "pose": POSE, "2Dfp": LANDMARKS_2D, "aus": AU_COLUMNS}
    return [c for g in check_groups(groups) for c in cols[g]]


def header(still: bool, groups=GROUPS) -> list[str]:
    """The column names of a FeatureExtraction / FaceLandmarkVidMulti file, or of FaceLandmarkImg's."""
    head = ["face", "confidence"] if still else ["frame", "face_id", "timestamp", "confidence", "success"]
    return head + group_columns(groups)


def confidence(face: FaceAUs) -> float:
    """0-1: the face detector's score of the face times the share of its 68 landmarks inside the
    frame (a face cut by the frame's edge counts less). OpenFace's is its landmark fit's certainty."""
    return max(0.0, min(1.0, float(face.box.score) * float(face.quality)))


def _values(face: FaceAUs | None, groups) -> dict[str, float]:
    v: dict[str, float] = {}
    if face is None:
        return v
    if "gaze" in groups and face.gaze is not None:
        g = face.gaze
        v.update(zip(GAZE, (*g.eye0, *g.eye1, g.angle_x, g.angle_y)))
    if "pose" in groups and face.pose is not None:
        p = face.pose
        v.update(zip(POSE, (p.tx, p.ty, p.tz, p.rx, p.ry, p.rz)))
    if "2Dfp" in groups:
        pts = face.landmarks
        v.update(zip(LANDMARKS_2D, [float(x) for x in pts[:, 0]] + [float(y) for y in pts[:, 1]]))
    if "aus" in groups:
        for a in AUS_R:
            r = face.aus.get(f"AU{a:02d}")
            if r is not None and r.intensity is not None:
                v[f"AU{a:02d}_r"] = r.intensity
        for a in AUS_C:
            r = face.aus.get(f"AU{a:02d}")
            if r is not None and r.present is not None:
                v[f"AU{a:02d}_c"] = float(r.present)
    return v


def _fmt(col: str, value) -> str:
    if col in ("frame", "face_id", "face", "success"):
        return str(int(value))
    if col == "timestamp":
        return f"{float(value):.3f}"
    if col == "confidence":
        return f"{float(value):.2f}"
    v = float(value)
    return f"{v if v == v else 0.0:.{_DECIMALS.get(col, 3)}f}"  # NaN never reaches a file: 0 as OpenFace writes


class OpenFaceWriter:
    """One OpenFace CSV (one per input, as OpenFace writes them); ``still``: FaceLandmarkImg's layout."""

    def __init__(self, path: Path, still: bool = False, groups=GROUPS, spaced: bool = False):
        self.path, self.still = Path(path), still
        self.groups = check_groups(groups)
        self.columns = header(still, self.groups)
        self.sep = ", " if spaced else ","
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", newline="", encoding="utf-8")
        self._line(self.columns)

    def _line(self, cells) -> None:
        try:
            self._fh.write(self.sep.join(cells) + "\n")
        except OSError as exc:
            raise InputError(str(self.path), f"cannot be written ({exc.strerror or exc})") from None

    def _row(self, head: dict, face: FaceAUs | None) -> None:
        vals = {**_values(face, self.groups), **head}
        self._line([_fmt(c, vals.get(c, 0.0)) for c in self.columns])

    def faces(self, faces: list[FaceAUs]) -> None:
        """A still's faces, ``face`` from 0 (FaceLandmarkImg: an image without a face has no row)."""
        for i, f in enumerate(faces):
            self._row({"face": i, "confidence": confidence(f)}, f)

    def frame(self, index: int, timestamp: float, faces: list[FaceAUs]) -> None:
        """One video frame (``index`` from 0; ``timestamp`` in seconds: OpenFace's ``(frame - 1) / fps``
        for a file, ``file_timestamp``): a row per tracked face, or one ``success`` 0 row."""
        stamp = {"frame": index + 1, "timestamp": timestamp}
        if not faces:
            self._row({**stamp, "face_id": 0, "confidence": 0.0, "success": 0}, None)
        for f in faces:
            fid = f.track_id if f.track_id is not None else f.index
            self._row({**stamp, "face_id": fid, "confidence": confidence(f), "success": 1}, f)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> OpenFaceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_timestamp(index: int, fps: float | None, fallback: float) -> float:
    """OpenFace's timestamp of frame ``index`` (from 0) of a file: index / fps; ``fallback`` (the
    frame's own time, a camera's clock) where the frame rate is unknown."""
    return index / fps if fps and fps > 0 else fallback


def write_openface(path, results, fps: float | None = None, groups=GROUPS, spaced: bool = False) -> Path:
    """Write results in OpenFace 2.2's layout: a still's faces (``detect()``'s list of ``FaceAUs``)
    as FaceLandmarkImg does, or a video's frames (``detect_video()``'s ``FrameResult`` s) as
    FeatureExtraction / FaceLandmarkVidMulti do (``fps``: the video's frame rate, for OpenFace's
    timestamps; without it the frames' own times). Frames without a picture are written as frames
    without a face."""
    results = list(results)
    still = all(isinstance(r, FaceAUs) for r in results) and not (results == [] and fps is not None)
    with OpenFaceWriter(Path(path), still=still, groups=groups, spaced=spaced) as w:
        if still:
            w.faces(results)
        else:
            for fr in results:
                if isinstance(fr, FaceAUs):
                    raise InputError("results", "mix faces of a still with video frames; give one or the other")
                w.frame(fr.index, file_timestamp(fr.index, fps, fr.timestamp), fr.faces)
    return Path(path)


def read_header(path: Path) -> list[str]:
    """The column names of an OpenFace CSV, either spelling (tests and tools)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [c.strip() for c in next(csv.reader(fh))]
