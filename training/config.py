"""Training configuration: a YAML file plus ``section.key=value`` overrides, validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtatl_sdk.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    cache: Path = Field(description="rtatl-prep cache of the labelled dataset")
    dataset: Literal["BP4D", "DISFA"] = "BP4D"
    fold: int | None = Field(1, description="1-3: train on the other two parts, test on this one; null: all subjects")
    unlabelled_cache: Path | None = None
    strict_subjects: bool = False
    #: Figure 4: train on this many of the fold's training subjects, drawn with ``subjects_seed``
    #: (null: all of them)
    train_subjects: int | None = Field(None, ge=1)
    subjects_seed: int = 0
    #: limited-label runs: train on this share of the labelled frames (drawn with
    #: ``subjects_seed``); the others leave training, the unlabelled data stay the same (1: all)
    label_fraction: float = Field(1.0, gt=0.0, le=1.0)
    aus: list[int] | None = None  #: default: the dataset's AU set
    colour_jitter: float = 0.0  #: training only: brightness/contrast/saturation factors in [1-j, 1+j] (paper: 0)
    greyscale: float = 0.0  #: training only: probability of a grey image (paper: 0)
    blur: float = 0.0  #: training only: probability of a Gaussian blur (paper: 0)
    jpeg: float = 0.0  #: training only: probability of a JPEG re-encoding (paper: 0)
    scale: float = 0.0  #: training only: canvas zoom in [1-s, 1+s] before the crop (paper: 0)


#: The compact graph (8x8 RoI cells, narrow auxiliary heads; the paper's are 12x12 and 35 M
#: parameters of heads): what checkpoints written before these settings existed were built with,
#: and the base of the default-model recipe's graphs (``recipes.default_model.GRAPHS``).
COMPACT_GRAPH = MappingProxyType({"roi_cells": 8, "g_width": 256, "dc_width": 32, "flow_width": 64})


class ModelConfig(_Strict):
    #: Table 1: backbone (Backbone^T, or Backbone^G with relation=gcn), the self-supervised
    #: baselines rotation / jigsaw / exemplar, ofe, roii, rtatl (both of the paper's tasks)
    variant: Literal["backbone", "ofe", "roii", "rtatl", "rotation", "jigsaw", "exemplar"] = "rtatl"
    relation: Literal["transformer", "gcn"] = "transformer"  #: AU relation module (gcn: Backbone^G)
    lambda_ssl: float = Field(0.2, ge=0.0)  #: weight of the rotation / jigsaw / exemplar loss (as lambda_f; not in the paper)
    d: int = Field(128, ge=8)
    heads: int = Field(8, ge=1)
    ff: int = Field(2048, ge=1)  #: transformer feed-forward width (not given in the paper; PyTorch's default)
    pretrained: Path | None = None
    lambda1: float = Field(0.1, ge=0.0, le=1.0)  #: Eq. 7 mixes lambda1 L_adv and (1 - lambda1) L_rec
    lambda2: float = Field(0.1, ge=0.0)
    lambda_f: float = Field(0.2, ge=0.0)
    #: RoI-Align cells per side: a 48-px RoI at stride 4 spans 12x12 (sec. 3.2; 5.51 GFLOPs, the
    #: paper's 5.57); checkpoints from before this setting used 8
    roi_cells: int = Field(12, ge=1)
    #: how each RoI map becomes the transformer's token (sec. 3.2 "vectorized RoI features"): mean
    #: over its cells, or one shared linear layer over the flattened map (18.6 M parameters, 5.6
    #: GFLOPs with 12x12 cells: the paper's 19.12 M / 5.57); not yet measured in the analogue
    roi_vector: Literal["mean", "linear"] = "mean"
    #: a lighter graph (not the paper's): the network first resizes its 192-px input to this side,
    #: so the trunk and the RoI features cost about (work_size / 192)^2 as much; the input and the
    #: RoI centres stay in the 192-px crop's coordinates (the model contract is unchanged); null: none
    work_size: int | None = Field(None, ge=32)
    #: an intensity head beside the occurrence head (0-5), trained where the data code intensities
    #: (DISFA) with lambda_int * L_int, L_int = mean squared error over the known intensities
    intensity: bool = False
    lambda_int: float = Field(1.0, ge=0.0)
    #: an expression head beside the AU heads (not in the paper): this many expression classes,
    #: trained with lambda_emo * soft cross entropy on crowd votes where the data have them (0: none)
    emotions: int = Field(0, ge=0)
    lambda_emo: float = Field(0.5, ge=0.0)
    #: auxiliary-head widths (the paper gives none): G's first transposed conv (halved per layer),
    #: D's and C's first conv (doubled per layer), the flow head's middle layer; these make the
    #: heads 35.4 M parameters, the paper's 54.62 M training graph minus its 19.12 M inference
    #: graph (``rtatl-stats``)
    g_width: int = Field(1024, ge=8)
    dc_width: int = Field(128, ge=1)
    flow_width: int = Field(128, ge=1)
    #: RoII: share of labelled images whose AU RoIs are cropped in a step (sec. 3.3 crops "some"
    #: samples; the value is not given); unlabelled images are always cropped
    crop_prob: float = Field(0.5, ge=0.0, le=1.0)
    #: L_Sup keeps an AU of a cropped image only if neither of its RoIs loses more than this
    #: share of its area to the whitened RoIs (sec. 3.5: "only on AUs in the intact regions")
    crop_max_lost: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.d % self.heads:
            raise ValueError(f"model.heads={self.heads} must divide model.d={self.d} (multi-head attention splits d)")
        return self
    #: RoII diagnosis: G reads the RoI features detached from the backbone (L_G then trains G alone)
    roii_detach: bool = False
    #: the auxiliary losses (L_G, lambda_f L_F, the SSL loss) are weighted by min(1, step / aux_warmup): a
    #: linear warm-up over this many steps (0: full weight from the first step, as in the paper)
    aux_warmup: int = Field(0, ge=0)


class OptimConfig(_Strict):
    lr: float = Field(3e-4, gt=0.0)
    batch_size: int = Field(32, ge=1)
    unlabelled_batch_size: int = Field(32, ge=1)
    steps: int = Field(20000, ge=1)
    grad_clip: float | None = Field(None, gt=0.0)
    balance_labels: bool = False  #: weight positives by negatives/positives per AU in L_Sup (paper: off)


class RunConfig(_Strict):
    out: Path = Path("runs/rtatl")
    seed: int = 0
    device: str = "auto"  #: auto, cpu, cuda, cuda:N
    amp: bool = True  #: mixed precision (CUDA only)
    workers: int = Field(2, ge=0)
    log_every: int = Field(10, ge=1)
    ckpt_every: int = Field(500, ge=1)
    nonfinite: Literal["stop", "skip"] = "stop"
    threads: int | None = Field(None, ge=1)  #: torch CPU threads


class TrainConfig(_Strict):
    data: DataConfig
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read ``path`` (YAML) and apply ``a.b=value`` overrides; errors name the file or override."""
    import yaml

    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(str(p), "config file not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(str(p), f"is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise InputError(str(p), "must hold a mapping of sections (data, model, optim, run)")
    for item in overrides:
        if "=" not in item:
            raise InputError(item, "an override must look like section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(item, f"{part} is not a section")
        node[parts[-1]] = _parse_value(value)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise InputError(str(path or "config"), "invalid configuration: " + config_errors(exc)) from None


def config_errors(exc: ValidationError, label=None, whole: str = "config") -> str:
    """pydantic's errors as one line: ``optim.batch_size=0: Input should be greater than or equal to 1; ...``.
    ``label``: how a setting's location is named (default ``a.b``); ``whole``: the name of the whole."""
    parts = []
    for e in exc.errors():
        loc = tuple(e.get("loc", ()))
        where = (label(loc) if label else ".".join(str(x) for x in loc)) if loc else ""
        msg = e["msg"].removeprefix("Value error, ")
        shown = where and e["type"] != "missing" and not isinstance(e.get("input"), dict)
        parts.append(f"{where}={e['input']!r}: {msg}" if shown else f"{where or whole}: {msg}")
    return "; ".join(parts)
