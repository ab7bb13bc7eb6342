"""rtatl_sdk: facial action unit detection (RTATL) without torch.

Geometry shared with training and export lives here, in numpy: the AU catalogue (``au``),
the 68-point landmark scheme (``landmarks``), alignment and AU centres (``geometry``) and the
input normalisation (``preprocess``). Heavy parts (face pipeline, ONNX engines) import lazily.
"""

from .au import AU_NAMES, AU_SETS, au_label, au_number
from .errors import InputError, ModelCardError, ModelFileError, ModelNotFoundError, RTATLError
from .images import load_image
from .version import __version__


def __getattr__(name):  # heavy parts load on first use
    if name == "AUDetector":
        from .detector import AUDetector

        return AUDetector
    if name in ("FaceAUs", "FrameResult", "AUResult", "Box", "to_dataframe"):
        from . import results

        return getattr(results, name)
    if name == "process_archive":
        from .cluster import process_archive

        return process_archive
    if name == "ModelCard":
        from .card import ModelCard

        return ModelCard
    raise AttributeError(f"module 'rtatl_sdk' has no attribute {name!r}")


__all__ = [
    "__version__",
    "AUDetector", "process_archive", "FaceAUs", "FrameResult", "AUResult", "Box", "ModelCard", "to_dataframe",
    "AU_NAMES",
    "AU_SETS",
    "InputError",
    "ModelCardError",
    "ModelFileError",
    "ModelNotFoundError",
    "RTATLError",
    "au_label",
    "au_number",
    "load_image",
]
