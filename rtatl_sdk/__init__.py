"""rtatl_sdk: facial action unit detection (RTATL) without torch.

    from rtatl_sdk import AUDetector
    with AUDetector() as det:
        faces = det.detect("photo.jpg")

Everything a user needs is importable from here. The layout: ``contract/`` (what training and
export share with the SDK, in numpy: AU catalogue, landmark scheme, alignment, normalisation,
model card, precisions), ``face/`` (detector, landmarker, pipeline, tracking), ``engines/``
(the AU-model backends behind one ``Engine`` contract), ``stream/`` (video frames and
per-track temporal state), ``io/`` (images, result rows, writers, drawings), ``apps/``
(console scripts, per-input runner, cluster runner). Heavy parts (face pipeline, ONNX engines,
Ray) import lazily, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contract.au import AU_NAMES, AU_SETS, au_label, au_number
from .errors import (
    ClosedError,
    InputError,
    ModelCardError,
    ModelFileError,
    ModelNotFoundError,
    RTATLError,
)
from .io.images import load_image
from .version import __version__

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and IDEs
    from .apps.cluster import process_archive
    from .contract.card import ModelCard
    from .contract.emotions import EMOTIONS
    from .detector import AUDetector
    from .engines import Engine, EngineBase, load_engine, register_backend
    from .io.draw import annotate, au_heatmap, draw_au_centres
    from .io.openface import write_openface
    from .io.rows import face_row, frame_rows, to_dataframe
    from .io.writers import RowWriter
    from .options import DetectorOptions, ReuseConfig
    from .results import AUResult, Box, FaceAUs, FrameResult

#: public name -> module that defines it (imported on first use)
_LAZY = {
    "AUDetector": "detector", "DetectorOptions": "options", "ReuseConfig": "options",
    "FaceAUs": "results", "FrameResult": "results", "AUResult": "results", "Box": "results",
    "to_dataframe": "io.rows", "face_row": "io.rows", "frame_rows": "io.rows", "RowWriter": "io.writers",
    "annotate": "io.draw", "au_heatmap": "io.draw", "draw_au_centres": "io.draw",
    "process_archive": "apps.cluster", "ModelCard": "contract.card", "write_openface": "io.openface",
    "EMOTIONS": "contract.emotions",
    "Engine": "engines", "EngineBase": "engines", "load_engine": "engines", "register_backend": "engines",
}


def __getattr__(name: str):  # heavy parts load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'rtatl_sdk' has no attribute {name!r}")


__all__ = [  # written out (not built from _LAZY) so that type checkers read it
    "__version__",
    "AUDetector", "DetectorOptions", "ReuseConfig", "FaceAUs", "FrameResult", "AUResult", "Box",
    "to_dataframe", "face_row", "frame_rows", "RowWriter", "annotate", "au_heatmap", "draw_au_centres",
    "process_archive", "ModelCard", "write_openface", "EMOTIONS", "Engine", "EngineBase", "load_engine", "register_backend",
    "AU_NAMES", "AU_SETS", "au_label", "au_number", "load_image",
    "ClosedError", "InputError", "ModelCardError", "ModelFileError", "ModelNotFoundError", "RTATLError",
]
