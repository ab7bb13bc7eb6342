"""Atomic file writes and checkpoints (temporary file + rename: a half-written file is never read)."""

from __future__ import annotations

import io
from pathlib import Path

from rtatl_sdk.errors import CheckpointError
from rtatl_sdk.io.files import atomic_write_bytes

CHECKPOINT_FORMAT = "rtatl-checkpoint-v1"


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _safe_globals() -> list:
    """What a checkpoint may hold beside tensors and plain data: numpy scalars and arrays (metrics
    and thresholds of older recipes were numpy values). Nothing here runs code on load."""
    import numpy as np

    multiarray = getattr(np, "_core", None) or np.core
    return [multiarray.multiarray.scalar, multiarray.multiarray._reconstruct, np.ndarray, np.dtype,
            *{type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGUS"}]


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by ``rtatl-train``; a clear RTATLError otherwise.

    Only tensors and plain data are read (``torch.load(weights_only=True)`` with numpy values
    allowed): a file that would run code or build other objects on load is refused, naming what
    it asks for, before any of it runs."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: code or an unknown object
        first = str(exc).split("\n")
        what = next((ln.strip() for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0])[:300]
        raise CheckpointError(f"checkpoint {path}: refused: it holds more than tensors and plain data ({what}); "
                              "only load checkpoints you trust from rtatl-train") from None
    except Exception as exc:  # truncated zip, pickle errors, wrong format
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc}); truncated or not a checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an RTATL checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    model_cfg = (state.get("config") or {}).get("model")
    if isinstance(model_cfg, dict):  # settings added since the checkpoint was written: what it was built with
        from .config import COMPACT_GRAPH

        for key, value in COMPACT_GRAPH.items():
            model_cfg.setdefault(key, value)
    return state


def training_config(state: dict, path: Path) -> dict:
    """A checkpoint's training configuration (``config``: data, model, ...), or a CheckpointError
    naming what is missing (a checkpoint of weights alone cannot be evaluated or exported)."""
    cfg = state.get("config")
    if not (isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and isinstance(cfg.get("data"), dict)
            and isinstance(state.get("aus"), list)):
        raise CheckpointError(f"checkpoint {path}: has no training configuration and AU list ('config', 'aus'); "
                              "it was not written by rtatl-train or the recipes")
    return cfg


def model_from_checkpoint(path: Path):
    """(RTATL model with the checkpoint's weights, eval mode; the checkpoint dict)."""
    from .config import TrainConfig
    from .model import RTATL

    state = load_checkpoint(path)
    try:
        cfg = TrainConfig.model_validate(state["config"])
        aus = tuple(state["aus"])
        model = RTATL(cfg.model, aus, init=False)
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: does not match the RTATL model ({type(exc).__name__}: {str(exc)[:300]})") from None
    return model.eval(), state


def write_initial_checkpoint(path: Path, cfg, aus, seed: int = 0) -> Path:
    """A checkpoint of a freshly initialised model (step 0): lets the export and SDK paths run
    before any training; its card says it is untrained."""
    import json

    import torch

    from .model import RTATL

    torch.manual_seed(seed)
    model = RTATL(cfg.model, tuple(aus))
    save_checkpoint(Path(path), {"model": model.state_dict(), "step": 0, "config": json.loads(cfg.model_dump_json()),
                                 "aus": list(aus), "training_data": "none: randomly initialised, untrained",
                                 "notes": "untrained weights; for testing the pipeline only"})
    return Path(path)
