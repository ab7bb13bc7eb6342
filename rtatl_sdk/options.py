"""``DetectorOptions``: every setting of an ``AUDetector``, validated once, in one place.

``AUDetector(options=...)`` (or its keywords), ``rtatl-detect``'s flags, the runner and the
cluster workers all take this object. A field with a ``flag`` is on the command line under that
name (``rtatl_sdk.apps.cli`` builds its parser from these fields); a field marked ``stateful``
carries state from one video frame to the next, so a resumed video that uses it is replayed
from its start (``DetectorOptions.carries_state``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError

#: the AU engine's threads at most (onnxruntime starts each one; a typo of 100000 would not finish starting)
MAX_THREADS = 256
#: the operating points a model card can carry (``DetectorOptions.thresholds``)
OPERATING_POINTS = ("default", "strict")


def _flag(flag: str | None = None, *, stateful: bool = False, metavar: str | None = None) -> dict:
    return {"flag": flag, "stateful": stateful, "metavar": metavar}


#: Default detection period in frames; chosen by ``python -m bench.bench_video`` (see docs/benchmarks.md).
DETECT_EVERY = 10


def check_detect_every(value, name: str = "detect_every") -> int:
    """The detection period, checked: a whole number of frames, 1 or more (InputError otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name}={value!r}", "must be a whole number of frames, 1 or more")
    return value


@dataclass(frozen=True)
class ReuseConfig:
    """When a track's face counts as unchanged since its last AU inference (keyframe reuse).

    Both must hold: no landmark of the aligned 192x192 crop has moved more than ``max_shift``
    pixels, and the crop's 48x48 grey thumbnail differs by at most ``max_pixel`` grey levels on
    average. A result is reused for at most ``max_age`` frames in a row.

    The defaults were chosen on the project's two talking-face clips (``python -m bench.bench_video`` and
    docs/benchmarks.md): 58 % of AU inferences reused with 99.3 % of AU decisions equal to
    inferring every frame.
    """

    max_shift: float = 2.0
    max_pixel: float = 5.0
    max_age: int = 3

    def __post_init__(self):
        if not (self.max_shift >= 0 and self.max_pixel >= 0 and self.max_age >= 1):
            raise ValueError(f"reuse: max_shift and max_pixel must be >= 0 and max_age >= 1, got {self}")


class DetectorOptions(BaseModel):
    """Settings of an ``AUDetector``; wrong types and values are refused when the object is made,
    in one line naming the option (``AUDetector(smoothing="0.5")`` -> ``smoothing='0.5': ...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    providers: list[str] | None = Field(None, description="onnxruntime providers (default: TensorRT EP, CUDA, CPU, "
                                        "whichever onnxruntime has)")
    threads: int = Field(0, ge=0, le=MAX_THREADS, strict=True, description="AU engine threads (0: one per core but one, left to the face stages)",
                         json_schema_extra=_flag("--threads"))
    backend: str | None = Field(None, strict=True, description="AU engine backend (default: by the model file: onnxruntime for "
                                ".onnx, TensorRT for .engine; openvino: pip install 'rtatl[openvino]')",
                                json_schema_extra=_flag("--backend"))
    blendshapes: bool = Field(False, strict=True, description="MediaPipe's 52 blendshape coefficients on each face")
    detector_model: Path | None = Field(None, description="face detector ONNX file (default: the model store)")
    landmarker_model: Path | None = Field(None, description="face_landmarker.task (default: the model store)")
    max_batch: int = Field(32, ge=1, strict=True, description="faces per AU-model call")
    keep_crops: bool = Field(False, strict=True, description="keep each face's aligned 192x192 crop and AU centres")
    smoothing: float | None = Field(None, gt=0.0, le=1.0, strict=True, description="temporal smoothing factor in (0, 1] (per track)",
                                    json_schema_extra=_flag("--smooth", stateful=True))
    calibration: bool = Field(False, strict=True, description="per-person neutral baseline learned per track",
                              json_schema_extra=_flag("--calibrate", stateful=True))
    detect_every: int = Field(DETECT_EVERY, strict=True, description=f"videos: run the face detector every K frames and track faces "
                              f"by their landmarks in between (default {DETECT_EVERY}); 1 detects on every frame",
                              json_schema_extra=_flag("--detect-every", stateful=True, metavar="K"))
    landmark_tracking: bool = Field(True, strict=True, description="videos: each tracked face has its own Landmarker in "
                                    "MediaPipe's video mode, which follows the face from its previous landmarks instead of "
                                    "running MediaPipe's detector in every frame (--no-landmark-tracking: image mode, as for stills)",
                                    json_schema_extra=_flag("--no-landmark-tracking"))  # state only with detect_every > 1
    #: keyframe reuse in videos: True (the default ``ReuseConfig()``), a ``ReuseConfig``, or False
    reuse: bool | ReuseConfig = Field(True, description="videos: reuse a track's AU result for up to 3 frames while "
                                      "its aligned face has barely changed (--no-reuse: the AU model on every frame)",
                                      json_schema_extra=_flag("--no-reuse", stateful=True))

    emotions: bool = Field(True, strict=True, description="the eight expressions' probabilities on each face, from a model "
                           "with the expression head (--no-emotions: AUs only; the AUs are the same either way)",
                           json_schema_extra=_flag("--no-emotions"))
    thresholds: str = Field("default", strict=True, description="the operating point: default (best F1 under a budget of "
                            "AUs called on resting faces) or strict (fewer AUs on resting faces), from the model's card",
                            json_schema_extra=_flag("--thresholds", metavar="POINT"))

    focal_length: float | None = Field(None, gt=0, allow_inf_nan=False, description="camera focal length in pixels for "
                                       "head pose and gaze (default: OpenFace's, the mean of 500 * width / 640 and "
                                       "500 * height / 480)",
                                       json_schema_extra=_flag("--focal-length", metavar="PX"))
    principal_point: tuple[float, float] | None = Field(None, description="camera principal point (x, y) in pixels "
                                                        "(default: the frame's centre)")

    @field_validator("reuse", mode="before")
    @classmethod
    def _reuse(cls, v):
        if isinstance(v, dict):
            try:
                return ReuseConfig(**v)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"not a ReuseConfig ({exc})") from None
        if v is None or not isinstance(v, (bool, ReuseConfig)):
            raise ValueError("must be True, False or a ReuseConfig")
        return v

    @field_validator("principal_point")
    @classmethod
    def _finite_point(cls, v):
        if v is not None and not all(math.isfinite(c) for c in v):
            raise ValueError("must be two finite numbers (x, y) in pixels")
        return v

    @field_validator("thresholds")
    @classmethod
    def _point(cls, v):
        if v not in OPERATING_POINTS:
            raise ValueError(f"must be one of {', '.join(OPERATING_POINTS)}")
        return v

    @field_validator("detect_every", mode="before")
    @classmethod
    def _period(cls, v):
        try:
            return check_detect_every(v)
        except InputError as exc:
            raise ValueError(exc.reason) from None

    @field_validator("providers")
    @classmethod
    def _providers(cls, v):
        if v is not None and not v:
            raise ValueError("give at least one provider, or None for the default order")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v):
        from .engines import backends

        if v is not None and v not in backends():
            raise ValueError(f"must be one of {', '.join(backends())}")
        return v

    @classmethod
    def make(cls, options: DetectorOptions | dict | None = None, flags: bool = False, **kwargs: Any) -> DetectorOptions:
        """Options from an options object or a dict plus keywords (keywords win); a bad one raises
        ``InputError`` naming it (by its flag when ``flags``: the command line's names)."""
        if not isinstance(options, (DetectorOptions, dict, type(None))):
            raise InputError("options", f"must be DetectorOptions or a dict of its fields, not {type(options).__name__} "
                             "(providers are a keyword: AUDetector(model, providers=[...]))")
        base = options.model_dump() if isinstance(options, DetectorOptions) else dict(options or {})
        try:
            return cls(**{**base, **kwargs})
        except ValidationError as exc:
            raise _input_error(exc, flags) from None

    @property
    def reuse_config(self) -> ReuseConfig | None:
        """The keyframe-reuse settings in force (None: off)."""
        return ReuseConfig() if self.reuse is True else (self.reuse or None)

    @property
    def carries_state(self) -> bool:
        """Whether a video's results depend on its earlier frames with these options: a ``stateful``
        field that is on (smoothing, calibration, tracking with ``detect_every`` > 1, reuse)."""
        return any(self._is_on(name) for name in self.stateful_fields())

    def _is_on(self, name: str) -> bool:
        v = getattr(self, name)
        return v > 1 if name == "detect_every" else bool(v)

    @classmethod
    def stateful_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("stateful")]

    @classmethod
    def flag_fields(cls) -> dict[str, Any]:
        """field name -> FieldInfo of the fields that are command-line flags."""
        return {n: f for n, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("flag")}

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON values (what an output records of the run that made it)."""
        return self.model_dump(mode="json")


def _input_error(exc: ValidationError, flags: bool) -> InputError:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err.get("loc") else "options"
    value = err.get("input")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        known = ", ".join(DetectorOptions.model_fields)
        return InputError(name, f"is not an AUDetector option (options: {known})")
    ctx = err.get("ctx") or {}
    plain = {"greater_than_equal": f"must be {ctx.get('ge')} or more", "greater_than": f"must be more than {ctx.get('gt')}",
             "less_than_equal": f"must be at most {ctx.get('le')}", "less_than": f"must be less than {ctx.get('lt')}",
             "bool_type": "must be True or False", "int_type": "must be a whole number", "float_type": "must be a number",
             "string_type": "must be a string", "list_type": "must be a list"}
    msg = plain.get(err["type"], msg)
    if name == "smoothing" and err["type"] in ("greater_than", "less_than_equal"):
        msg = "must lie in (0, 1]"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    info = DetectorOptions.model_fields.get(name)
    flag = (info.json_schema_extra or {}).get("flag") if info is not None else None
    label = f"{flag} {value}" if flags and flag else f"{name}={value!r}"
    return InputError(label, msg[0].lower() + msg[1:] if msg else "invalid")
