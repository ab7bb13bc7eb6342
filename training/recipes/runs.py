"""The recipes' training runs, one way for all: train in segments with a validation after each,
one results file per finished run, and one skip rule (a run whose results file is there, and
still valid, is not run again). The default model's recipe, the Table 1 analogue, its
pretrained regime and the RoII diagnosis use it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def segments(steps: int, every: int) -> list[int]:
    """The steps after which a run is validated: every ``every`` steps, and at ``steps``."""
    return sorted({*range(every, steps, every), steps})


def train_in_segments(cfg, steps: int, every: int, validate: Callable, progress: bool = True,
                      done: set[int] | None = None) -> tuple[object, list[dict]]:
    """Train ``cfg`` to ``steps`` in segments of ``every`` (``rtatl-train`` resumes its own
    checkpoint between them) and call ``validate(model, stop, checkpoint)`` after each; returns
    the last model and the list of what ``validate`` returned. Segments in ``done`` (their
    validation kept by the caller) are not trained or validated again."""
    from ..checkpoint import model_from_checkpoint
    from ..train import train

    curve, model = [], None
    for stop in segments(steps, every):
        if done and stop in done:
            continue
        cfg.optim.steps = stop
        res = train(cfg, progress=progress)
        model, _ = model_from_checkpoint(Path(res["checkpoint"]))
        curve.append(validate(model, stop, Path(res["checkpoint"])))
    return model, curve


class Results:
    """A folder of results, one JSON file per finished run (``NAME.json``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def done(self, name: str, valid: Callable[[dict], bool] | None = None) -> bool:
        """The skip rule: the run's results file is there (and ``valid`` accepts it)."""
        p = self.path(name)
        return p.is_file() and (valid is None or valid(json.loads(p.read_text())))

    def write(self, name: str, row: dict) -> Path:
        """The finished run's results, written whole (readers see no file or all of it)."""
        from rtatl_sdk.io.files import atomic_write_bytes

        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path(name), (json.dumps(row, indent=1) + "\n").encode())
        return self.path(name)

    def rows(self, pattern: str = "*", exclude: tuple[str, ...] = ()) -> list[dict]:
        """Every finished run's results (file names matching ``pattern``), in name order."""
        return [json.loads(p.read_text()) for p in sorted(self.folder.glob(f"{pattern}.json")) if p.name not in exclude]
