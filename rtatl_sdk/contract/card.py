"""The model card: what an exported model carries in its ONNX metadata and the SDK validates."""

from __future__ import annotations

import json
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ModelCardError
from ..version import __version__
from . import geometry, preprocess
from .au import AU_NAMES, au_label, au_number

#: Key of the card in the ONNX model's metadata_props.
METADATA_KEY = "rtatl_model_card"
#: a card is a few kB; anything past this is not one (and is not parsed)
MAX_CARD_BYTES = 1_000_000
#: Version of the AU-centre rules in ``geometry.AU_CENTRE_RULES``; bump when they change.
CENTRE_RULES_VERSION = "roinet-jaa-v1"
LANDMARK_SCHEME = "ibug68"


def calibrated(probs, thresholds, slopes) -> np.ndarray:
    """Published probabilities from raw sigmoid scores (..., N): sigmoid(slope * (logit(p) -
    logit(threshold))) per AU, so 0.5 is the threshold. The one formula: the recipe fits the slopes
    with it, the SDK publishes with it."""
    def logit(x):
        x = np.clip(np.asarray(x, np.float64), 1e-7, 1 - 1e-7)
        return np.log(x / (1 - x))

    z = np.asarray(slopes, np.float64) * (logit(probs) - logit(thresholds))
    return 1.0 / (1.0 + np.exp(-z))


def anchored(raw, rest) -> np.ndarray:
    """0-5 intensities measured from rest: (r - rest) * 5 / (5 - rest), clipped to 0-5."""
    rest = np.asarray(rest, np.float64)
    return np.clip((np.asarray(raw, np.float64) - rest) * 5.0 / np.maximum(5.0 - rest, 1e-6), 0.0, 5.0)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    training_data: str = Field(description="what the weights were trained on")
    licence: str = "MIT"
    checkpoint: str | None = None
    notes: str = ""


class ModelCard(BaseModel):
    """Everything needed to run an exported model exactly as it was trained."""

    model_config = ConfigDict(extra="forbid")

    name: str = "rtatl"
    version: str = __version__
    aus: list[str] = Field(description="AU labels in output order, e.g. ['AU01', 'AU02']")
    thresholds: list[float] = Field(description="per-AU probability thresholds for occurrence")
    input_size: int = geometry.CROP_SIZE
    aligned_size: int = geometry.ALIGNED_SIZE
    colour_order: Literal["RGB", "BGR"] = preprocess.COLOUR_ORDER
    mean: tuple[float, float, float] = preprocess.MEAN
    std: tuple[float, float, float] = preprocess.STD
    landmark_scheme: str = LANDMARK_SCHEME
    centre_rules: str = CENTRE_RULES_VERSION
    roi_size: int = geometry.ROI_SIZE
    inputs: dict[str, str] = {
        "image": "float32 [B,3,S,S], normalised",
        "centres": "float32 [B,2N,2], AU centres in crop pixels",
    }
    outputs: dict[str, str] = {"logits": "float32 [B,N]"}
    #: what an ``intensity`` output's 0-5 means (FACS A-E coding of a dataset, or a teacher's
    #: strength mapped onto that scale); None: the model gives no intensities
    intensity_scale: str | None = None
    #: per AU, the raw intensity a resting face reads: published intensities are anchored there
    #: (``anchor_intensity``); None: published as the head gives them
    intensity_rest: list[float] | None = None
    #: per AU, the slope that makes the published probability readable (``calibrate``): 0.5 is the
    #: threshold and the value follows how often the AU is there; None: the raw sigmoid is published
    calibration: list[float] | None = None
    #: a stricter operating point (``thresholds="strict"``), fewer AUs called on resting faces
    thresholds_strict: list[float] | None = None
    #: the expression head's classes in output order (an ``emotions`` output of logits); None: no head
    emotions: list[str] | None = None
    provenance: Provenance
    metrics: dict[str, float | dict[str, float]] = {}

    @field_validator("aus")
    @classmethod
    def _known_aus(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the AU list is empty")
        out = [au_label(au_number(a)) for a in v]  # raises InputError for unknown names
        if len(set(out)) != len(out):
            raise ValueError(f"the AU list repeats an AU: {v}")
        return out

    @field_validator("thresholds")
    @classmethod
    def _valid_thresholds(cls, v: list[float]) -> list[float]:
        if any(not (0.0 < t < 1.0) for t in v):
            raise ValueError(f"thresholds must lie strictly between 0 and 1, got {v}")
        return v

    @model_validator(mode="after")
    def _intensity_described(self) -> ModelCard:
        if "intensity" in self.outputs and not self.intensity_scale:
            raise ValueError("an intensity output needs intensity_scale: what its 0-5 means")
        return self

    @field_validator("mean")
    @classmethod
    def _valid_mean(cls, v):
        if any(not (math.isfinite(m) and 0.0 <= m <= 1.0) for m in v):
            raise ValueError(f"mean must be finite values in [0, 1] (pixels are scaled to [0, 1] first), got {list(v)}")
        return v

    @field_validator("std")
    @classmethod
    def _valid_std(cls, v):
        if any(not (math.isfinite(s) and 0.01 <= s <= 10.0) for s in v):
            raise ValueError(f"std must be finite values in [0.01, 10] (a division by it normalises), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> ModelCard:
        if len(self.thresholds) != len(self.aus):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.aus)} AUs")
        for name in ("intensity_rest", "calibration", "thresholds_strict"):
            v = getattr(self, name)
            if v is not None and len(v) != len(self.aus):
                raise ValueError(f"{len(v)} {name} values for {len(self.aus)} AUs")
        if self.thresholds_strict is not None and any(not (0.0 < t < 1.0) for t in self.thresholds_strict):
            raise ValueError(f"thresholds_strict must lie strictly between 0 and 1, got {self.thresholds_strict}")
        if self.calibration is not None and any(not (math.isfinite(a) and 0.01 <= a <= 100.0) for a in self.calibration):
            raise ValueError(f"calibration slopes must be finite values in [0.01, 100], got {self.calibration}")
        if self.intensity_rest is not None and any(not (math.isfinite(r) and 0.0 <= r < 5.0) for r in self.intensity_rest):
            raise ValueError(f"intensity_rest values must be finite and in [0, 5), got {self.intensity_rest}")
        if self.emotions is not None:
            from .emotions import EMOTIONS

            unknown = [e for e in self.emotions if e not in EMOTIONS]
            if unknown or len(set(self.emotions)) != len(self.emotions) or not self.emotions:
                raise ValueError(f"emotions must be distinct names among {list(EMOTIONS)}, got {self.emotions}")
            if "emotions" not in self.outputs:
                raise ValueError("a card that lists emotions needs an 'emotions' output")
        return self

    def calibrate(self, probs: np.ndarray, thresholds=None) -> np.ndarray:
        """Published probabilities from raw sigmoid scores (..., N): sigmoid(slope * (logit(p) -
        logit(threshold))), so 0.5 is the decision threshold; the raw scores where the card has no
        calibration. ``thresholds``: the operating point in use (default: the card's)."""
        if self.calibration is None:
            return np.asarray(probs, np.float64)
        return calibrated(probs, self.thresholds if thresholds is None else thresholds, self.calibration)

    def anchor_intensity(self, raw: np.ndarray) -> np.ndarray:
        """Published 0-5 intensities from the head's (..., N): (r - rest) * 5 / (5 - rest), in 0-5."""
        if self.intensity_rest is None:
            return np.clip(np.asarray(raw, np.float64), 0.0, 5.0)
        return anchored(raw, self.intensity_rest)

    @property
    def au_numbers(self) -> tuple[int, ...]:
        return tuple(au_number(a) for a in self.aus)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model card") -> ModelCard:
        if len(text) > MAX_CARD_BYTES:
            raise ModelCardError(f"{source}: invalid model card: {len(text)} bytes, more than a card holds ({MAX_CARD_BYTES})")
        try:
            return cls.model_validate(json.loads(text))
        except RecursionError:  # arrays nested thousands deep
            raise ModelCardError(f"{source}: invalid model card: nested too deeply to be a card") from None
        except (ValidationError, ValueError, TypeError) as exc:
            raise ModelCardError(f"{source}: invalid model card: {exc}") from None

    def check_geometry(self, source: str = "model card") -> None:
        """Raise ModelCardError unless the card agrees with this SDK's geometry."""
        expected = {
            "input_size": geometry.CROP_SIZE,
            "aligned_size": geometry.ALIGNED_SIZE,
            "landmark_scheme": LANDMARK_SCHEME,
            "centre_rules": CENTRE_RULES_VERSION,
            "roi_size": geometry.ROI_SIZE,
        }
        bad = [f"{k}={getattr(self, k)!r} (SDK: {v!r})" for k, v in expected.items() if getattr(self, k) != v]
        missing = [a for a in self.au_numbers if a not in AU_NAMES]
        if bad or missing:
            raise ModelCardError(f"{source}: model geometry differs from this SDK: " + ", ".join(bad + missing))
