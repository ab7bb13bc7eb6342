"""Typed results of the SDK (pydantic) and their tabular forms."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer


class AUResult(BaseModel):
    probability: float
    #: the decision at ``threshold``; None when the AU's region lies outside the frame (not seen)
    present: bool | None
    threshold: float


class Box(BaseModel):
    """A face box in image pixels (top-left x, y, width, height) and the detector's score."""

    x: float
    y: float
    w: float
    h: float
    score: float

    def square(self, factor: float) -> tuple[float, float, float]:
        """Centre x, centre y and side of a square ``factor`` times the box's larger side."""
        return self.x + self.w / 2, self.y + self.h / 2, max(self.w, self.h) * factor


class FaceAUs(BaseModel):
    """One face: where it is, its 68 landmarks (image pixels) and its AUs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int  #: position of the face in its image (left to right, from 0)
    box: Box
    landmarks: np.ndarray  #: (68, 2) float, image pixels
    aus: dict[str, AUResult]
    track_id: int | None = None
    blendshapes: dict[str, float] | None = None
    #: share of the 68 landmarks inside the frame (1.0: the whole face is in view)
    quality: float = 1.0
    #: the aligned 192x192 BGR crop the model saw and its (2N, 2) AU centres, with
    #: ``AUDetector(keep_crops=True)``; never serialised
    crop: np.ndarray | None = Field(default=None, exclude=True, repr=False)
    crop_centres: np.ndarray | None = Field(default=None, exclude=True, repr=False)

    @field_serializer("landmarks")
    def _lm(self, v: np.ndarray) -> list:
        return np.round(np.asarray(v, dtype=float), 2).tolist()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @property
    def face(self) -> int:
        """The face's position in its image; kept for code written before ``index``."""
        return self.index

    def probabilities(self) -> dict[str, float]:
        return {k: v.probability for k, v in self.aus.items()}


class FrameResult(BaseModel):
    """One frame of a video or camera stream; ``error`` is set when it could not be decoded.
    ``image`` (BGR) is kept only when ``detect_video(..., keep_images=True)`` and never dumped."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: int
    timestamp: float
    faces: list[FaceAUs]
    error: str | None = None
    image: np.ndarray | None = Field(default=None, exclude=True, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


#: Columns before the AU columns in CSV/DataFrame rows.
#: ``success`` is 1 on a face's row, 0 on the one row of a frame or image without a face (or without a
#: picture: then ``error`` says why); ``quality`` is the share of the face's landmarks inside the frame.
BASE_COLUMNS = ["input", "frame", "timestamp", "success", "face", "track_id", "x", "y", "w", "h", "quality"]


def au_columns(aus: list[str]) -> list[str]:
    """OpenFace-style: ``AU01_p`` (probability) for every AU, then ``AU01_c`` (occurrence)."""
    return [f"{a}_p" for a in aus] + [f"{a}_c" for a in aus]


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
    }
    for name, r in face.aus.items():
        row[f"{name}_p"] = round(r.probability, 4)
    for name, r in face.aus.items():
        row[f"{name}_c"] = "" if r.present is None else int(r.present)  # empty: the AU's region is out of the frame
    return row


def to_dataframe(frames, input_name: str = ""):
    """A video's (or image list's) results as a pandas DataFrame, one row per face per frame."""
    import pandas as pd

    rows = []
    for fr in frames:
        for face in fr.faces:
            rows.append(face_row(input_name, fr.index, fr.timestamp, face))
    if not rows:
        return pd.DataFrame(columns=BASE_COLUMNS)
    return pd.DataFrame(rows)
