"""The row schema of every tabular output (CSV, JSON Lines, DataFrame): OpenFace-style columns.

One place for the columns: ``BASE_COLUMNS``, then the AU columns (``au_columns``), then
``error``; ``face_row`` fills them from a ``FaceAUs``.
"""

from __future__ import annotations

import math
from typing import Any

from ..results import FaceAUs

#: Columns before the gaze, pose and AU columns in CSV/DataFrame rows.
#: ``success`` is 1 on a face's row, 0 on the one row of a frame or image without a face (or without a
#: picture: then ``error`` says why); ``quality`` is the share of the face's landmarks inside the frame.
BASE_COLUMNS = ["input", "frame", "timestamp", "success", "face", "track_id", "x", "y", "w", "h", "quality"]


#: OpenFace 2.2's gaze and head-pose columns, in its order; empty where a face has none.
GAZE_COLUMNS = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]


def geometry_values(face: FaceAUs) -> dict[str, Any]:
    """A face's gaze and pose columns (mm rounded to 0.1, radians and unit vectors to 4 decimals)."""
    row: dict[str, Any] = dict.fromkeys(GAZE_COLUMNS + POSE_COLUMNS, "")
    g, p = face.gaze, face.pose
    if g is not None:
        row.update(zip(GAZE_COLUMNS, [round(v, 4) for v in (*g.eye0, *g.eye1, g.angle_x, g.angle_y)]))
    if p is not None:
        row.update(zip(POSE_COLUMNS, [round(p.tx, 1), round(p.ty, 1), round(p.tz, 1),
                                      round(p.rx, 4), round(p.ry, 4), round(p.rz, 4)]))
    return row


def au_columns(aus: list[str], intensity: bool = False) -> list[str]:
    """OpenFace-style: ``AU01_p`` (probability) for every AU, then ``AU01_r`` (intensity 0-5, with
    ``intensity``), then ``AU01_c`` (occurrence)."""
    return [f"{a}_p" for a in aus] + ([f"{a}_r" for a in aus] if intensity else []) + [f"{a}_c" for a in aus]


def columns(aus: list[str], intensity: bool = False, emotions: list[str] | None = None) -> list[str]:
    """Every column of a result file, in order: base, gaze, pose, AU columns (with ``AUxx_r``
    intensities for a model that has them), the expressions' probabilities under py-feat's names
    (``anger ... neutral, contempt``, for a model with the expression head), error."""
    return [*BASE_COLUMNS, *GAZE_COLUMNS, *POSE_COLUMNS, *au_columns(aus, intensity), *(emotions or ()), ERROR_COLUMN]


#: Last column: empty for face rows; for a frame that has no result, why (one row, no face).
ERROR_COLUMN = "error"


def error_row(input_name: str, frame: int, timestamp: float, reason: str) -> dict[str, Any]:
    return {"input": input_name, "frame": frame, "timestamp": round(timestamp, 4), "success": 0, ERROR_COLUMN: reason}


def frame_rows(input_name: str, frame: int, timestamp: float, faces: list[FaceAUs]) -> list[dict[str, Any]]:
    """A processed frame's rows: one per face, or one ``success=0`` row when it has no face, so
    "processed, no face" never looks like "never processed"."""
    if not faces:
        return [{"input": input_name, "frame": frame, "timestamp": round(timestamp, 4), "success": 0}]
    return [face_row(input_name, frame, timestamp, f) for f in faces]


def face_row(input_name: str, frame: int, timestamp: float, face: FaceAUs) -> dict[str, Any]:
    row: dict[str, Any] = {
        "input": input_name, "frame": frame, "timestamp": round(timestamp, 4), "success": 1, "face": face.index,
        "track_id": face.track_id if face.track_id is not None else "",
        "x": round(face.box.x, 1), "y": round(face.box.y, 1), "w": round(face.box.w, 1), "h": round(face.box.h, 1),
        "quality": round(face.quality, 3),
        **geometry_values(face),
    }
    for name, r in face.aus.items():
        row[f"{name}_p"] = round(r.probability, 4) if math.isfinite(r.probability) else ""
    if any(r.intensity is not None for r in face.aus.values()):
        for name, r in face.aus.items():  # empty, never "nan": no value, or a model that gave no number
            row[f"{name}_r"] = "" if r.intensity is None or not math.isfinite(r.intensity) else round(r.intensity, 3)
    for name, r in face.aus.items():
        row[f"{name}_c"] = "" if r.present is None else int(r.present)  # empty: the AU's region is out of the frame
    for name, p in (face.emotions or {}).items():
        row[name] = round(p, 4)
    return row


def to_dataframe(frames, input_name: str = "", detector=None):
    """A video's (or image list's) results as a pandas DataFrame, one row per face per frame.
    ``detector`` (the ``AUDetector`` that made them) fixes the columns, so a stream without a face
    still has its AU columns (empty)."""
    import pandas as pd

    rows = []
    for fr in frames:
        for face in fr.faces:
            rows.append(face_row(input_name, fr.index, fr.timestamp, face))
    cols = (columns(list(detector.aus), detector.has_intensity, detector.emotion_names)[:-1] if detector is not None
            else None)
    if not rows:
        return pd.DataFrame(columns=cols or BASE_COLUMNS + GAZE_COLUMNS + POSE_COLUMNS)
    return pd.DataFrame(rows, columns=cols) if cols else pd.DataFrame(rows)
