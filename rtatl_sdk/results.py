"""Typed results of the SDK (pydantic); their rows and columns are ``rtatl_sdk.io.rows``."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_serializer


class AUResult(BaseModel):
    #: the published probability (``AUxx_p``): for a model whose card carries a calibration, 0.5 is
    #: the decision threshold and the value follows how often the AU is there; otherwise the raw score
    probability: float
    #: the decision (probability >= ``threshold``); None when the AU's region lies outside the frame (not seen)
    present: bool | None
    threshold: float
    #: 0-5 (OpenFace's AUxx_r) from a model with an intensity head, anchored so a resting face reads
    #: about 0 (its card says what the scale means); None without one, or where the AU's region is outside the frame
    intensity: float | None = None
    #: the network's own sigmoid output, before calibration (equal to ``probability`` without one)
    score: float | None = None


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


class HeadPose(BaseModel):
    """The head's pose in the frame's camera, OpenFace 2.2's ``pose_*`` (conventions:
    ``rtatl_sdk.face.pose``): x right, y down, z away from the camera."""

    tx: float  #: mm, camera coordinates (pose_Tx)
    ty: float  #: mm (pose_Ty)
    tz: float  #: mm, distance along the optical axis (pose_Tz)
    rx: float  #: radians, pitch: > 0 face tilted down (pose_Rx)
    ry: float  #: radians, yaw: > 0 nose turned to the image's left (pose_Ry)
    rz: float  #: radians, roll: > 0 face turned clockwise in the image (pose_Rz)


class Gaze(BaseModel):
    """Eye gaze in the frame's camera, OpenFace 2.2's ``gaze_*``: unit vectors from each eyeball's
    centre through its iris, and the angles of their mean."""

    eye0: tuple[float, float, float]  #: the eye on the image's left (the person's right eye): gaze_0_x/y/z
    eye1: tuple[float, float, float]  #: the eye on the image's right: gaze_1_x/y/z
    angle_x: float  #: radians, atan2(g.x, -g.z): > 0 looking towards the image's right (gaze_angle_x)
    angle_y: float  #: radians, atan2(g.y, -g.z): > 0 looking down (gaze_angle_y)


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
    #: head pose in the frame's camera; None when the face is too small for it (``rtatl_sdk.face.pose``)
    pose: HeadPose | None = None
    #: eye gaze; None when an eye is closed, outside the frame, or the face too small
    gaze: Gaze | None = None
    #: the eight expressions' probabilities (summing to 1; ``rtatl_sdk.contract.emotions``) from a
    #: model with the expression head; None without one, or with ``emotions=False``
    emotions: dict[str, float] | None = None
    #: the most probable expression (None where ``emotions`` is None)
    emotion: str | None = None
    #: the aligned 192x192 BGR crop the model saw and its (2N, 2) AU centres, with
    #: ``AUDetector(keep_crops=True)``; never serialised
    crop: np.ndarray | None = Field(default=None, exclude=True, repr=False)
    crop_centres: np.ndarray | None = Field(default=None, exclude=True, repr=False)

    @field_serializer("landmarks")
    def _lm(self, v: np.ndarray) -> list:
        return np.round(np.asarray(v, dtype=float), 2).tolist()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

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
