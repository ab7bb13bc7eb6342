"""The model card: what an exported model carries in its ONNX metadata and the SDK validates."""

from __future__ import annotations

import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ModelCardError
from ..version import __version__
from . import geometry, preprocess
from .au import AU_NAMES, au_label, au_number

#: Key of the card in the ONNX model's metadata_props.
METADATA_KEY = "rtatl_model_card"
#: Version of the AU-centre rules in ``geometry.AU_CENTRE_RULES``; bump when they change.
CENTRE_RULES_VERSION = "roinet-jaa-v1"
LANDMARK_SCHEME = "ibug68"


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
        return self

    @property
    def au_numbers(self) -> tuple[int, ...]:
        return tuple(au_number(a) for a in self.aus)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model card") -> ModelCard:
        try:
            return cls.model_validate(json.loads(text))
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
