"""Atomic file writes and checkpoints (temporary file + rename: a half-written file is never read)."""

from __future__ import annotations

import io
from pathlib import Path

from rtatl_sdk.errors import CheckpointError
from rtatl_sdk.files import atomic_write_bytes

CHECKPOINT_FORMAT = "rtatl-checkpoint-v1"


def save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by ``rtatl-train``; a clear RTATLError otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, pickle errors, wrong format
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc}); truncated or not a checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an RTATL checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    model_cfg = (state.get("config") or {}).get("model")
    if isinstance(model_cfg, dict):  # settings added since the checkpoint was written: what it was built with
        from .config import LEGACY_MODEL

        for key, value in LEGACY_MODEL.items():
            model_cfg.setdefault(key, value)
    return state


def model_from_checkpoint(path: Path):
    """(RTATL model with the checkpoint's weights, eval mode; the checkpoint dict)."""
    from .config import TrainConfig
    from .rtatl import RTATL

    state = load_checkpoint(path)
    try:
        cfg = TrainConfig.model_validate(state["config"])
        aus = tuple(state["aus"])
        model = RTATL.from_config(cfg, aus, from_checkpoint=True)
        model.load_state_dict(state["model"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: does not match the RTATL model ({type(exc).__name__}: {str(exc)[:300]})") from None
    return model.eval(), state


def write_initial_checkpoint(path: Path, cfg, aus, seed: int = 0) -> Path:
    """A checkpoint of a freshly initialised model (step 0): lets the export and SDK paths run
    before any training; its card says it is untrained."""
    import json

    import torch

    from .rtatl import RTATL

    torch.manual_seed(seed)
    model = RTATL.from_config(cfg, tuple(aus))
    save_checkpoint(Path(path), {"model": model.state_dict(), "step": 0, "config": json.loads(cfg.model_dump_json()),
                                 "aus": list(aus), "training_data": "none: randomly initialised, untrained",
                                 "notes": "untrained weights; for testing the pipeline only"})
    return Path(path)
