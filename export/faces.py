"""Real aligned faces from images or videos, as model inputs (for parity checks and INT8 calibration)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtatl_sdk.contract.preprocess import model_inputs
from rtatl_sdk.errors import InputError, RTATLError
from rtatl_sdk.io.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, load_image

log = logging.getLogger(__name__)


def _frames(path: Path, video_stride: int):
    from rtatl_sdk.stream.video import iter_frames

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        ext = f.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            try:
                yield load_image(f)
            except InputError as exc:
                log.warning("skipping %s", exc)
        elif ext in VIDEO_EXTENSIONS:
            for fr in iter_frames(f):
                if fr.index % video_stride == 0 and fr.image is not None:
                    yield fr.image


def collect_faces(path, aus, max_faces: int = 64, video_stride: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_faces`` faces found in the images/videos at ``path`` -> (image, centres)."""
    from rtatl_sdk.face import FacePipeline

    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file or folder of face images/videos")
    pipe = FacePipeline()
    crops, lms = [], []
    try:
        for img in _frames(path, video_stride):
            for face in pipe.process(img):
                crops.append(face.crop())
                lms.append(face.crop_landmarks())
            if len(crops) >= max_faces:
                break
    finally:
        pipe.close()
    if not crops:
        raise RTATLError(f"{path}: no face found in any image or video frame")
    return model_inputs(crops[:max_faces], lms[:max_faces], aus)
