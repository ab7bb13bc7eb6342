"""The settings record of an output: what shaped its rows (model, the detector options that change
results), written beside it (``.<name>.settings.json``) and compared by a resume or a re-run."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import InputError

#: DetectorOptions fields that do not change an output's rows (speed, memory, extras not written)
_NOT_IN_ROWS = {"threads", "providers", "max_batch", "keep_crops", "blendshapes"}


def row_settings(options, model: str | None, model_file: Path | None = None, **extra) -> dict:
    """What shapes an output's rows, recorded with it: the model (its path as given and, when the
    file is at hand, its SHA-256), the detector options that change results, and ``extra``
    (the cluster's ``max_frames``). A resume or re-run compares them with its own."""
    out = {"model": str(model) if model is not None else "default"}
    if model_file is not None and Path(model_file).is_file():
        out["model_sha256"] = _sha256(str(Path(model_file).resolve()), Path(model_file).stat().st_mtime_ns)
    out["options"] = {k: v for k, v in options.settings().items() if k not in _NOT_IN_ROWS}
    out.update(extra)
    return out


def settings_difference(old: dict, new: dict) -> str:
    """'key: old -> new, ...' for the settings that differ (empty when none do)."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(old)), dict(flat(new))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime_ns: int) -> str:
    from ..io.files import file_sha256

    return file_sha256(path)


def settings_file(out: Path) -> Path:
    """The record of the settings an output was written with: ``.<name>.settings.json`` beside it."""
    return out.with_name(f".{out.name}.settings.json")


def check_resume_settings(out: Path, settings: dict, resume: bool) -> None:
    """A resume continues a file only with the settings it was written with (model, detector
    options that change rows); otherwise one line says what differs and nothing is touched."""
    side = settings_file(out)
    if not (resume and out.exists() and out.stat().st_size > 0):
        return
    if not side.is_file():  # nothing tells which model and options wrote the rows: never mix two runs
        raise InputError(f"--resume {out}", f"its settings record {side.name} is missing, so the model and options "
                         "that wrote it cannot be checked; write to a new file")
    try:
        old = json.loads(side.read_text())
    except (OSError, ValueError):
        raise InputError(f"--resume {out}", f"its settings record {side.name} cannot be read; write to a new file") from None
    if not isinstance(old, dict):
        raise InputError(f"--resume {out}", f"its settings record {side.name} is not a settings record; write to a new file")
    diff = settings_difference(old, settings)
    if diff:
        raise InputError(f"--resume {out}", f"it was written with other settings ({diff}); resume with those or "
                         "write to a new file")


def write_settings(out: Path, settings: dict) -> None:
    from ..io.files import atomic_write_bytes

    try:
        atomic_write_bytes(settings_file(out), json.dumps(settings, indent=1).encode())
    except OSError as exc:
        raise InputError(f"--out {out}", f"its settings record cannot be written ({exc.strerror or exc})") from None
