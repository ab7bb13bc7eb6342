"""Turning what a user passes (path, bytes, numpy array, PIL image) into a BGR uint8 image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

#: The largest side accepted, to refuse absurd allocations with a clear message.
MAX_SIDE = 16384


def decode_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR uint8, or raise InputError."""
    import cv2

    if len(data) == 0:
        raise InputError(name, "is empty (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # some corrupt headers raise instead of returning None
        raise InputError(name, f"cannot be decoded as an image ({exc.__class__.__name__})") from None
    if img is None:
        raise InputError(name, "is not a decodable image (unknown format or corrupt data)")
    if img.dtype == np.uint16:  # 16-bit PNG/TIFF
        img = (img >> 8).astype(np.uint8)
    return to_bgr(img, name, colour="bgr")


def to_bgr(arr: np.ndarray, name: str, colour: str = "bgr") -> np.ndarray:
    """Validate an array image and return it as contiguous BGR uint8 ``(H, W, 3)``.

    Accepted: uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped);
    ``colour`` says whether 3/4-channel input is ``"bgr"`` (OpenCV) or ``"rgb"``.
    """
    if colour not in ("bgr", "rgb"):
        raise InputError("colour", f"must be 'bgr' or 'rgb', got {colour!r}")
    if not isinstance(arr, np.ndarray):
        raise InputError(name, f"expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.uint8:
        raise InputError(name, f"dtype {arr.dtype} is not supported; pass uint8 pixels (0-255)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(name, f"shape {arr.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    h, w = arr.shape[:2]
    if h < 1 or w < 1:
        raise InputError(name, f"is empty (shape {arr.shape})")
    if max(h, w) > MAX_SIDE:
        raise InputError(name, f"is {w}x{h}; sides above {MAX_SIDE} pixels are not supported")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    arr = arr[:, :, :3]
    if colour == "rgb":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def load_image(image, colour: str = "bgr", name: str | None = None) -> np.ndarray:
    """Any supported image input -> BGR uint8 ``(H, W, 3)``; ``name`` labels errors."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        label = name or str(path)
        if not path.exists():
            raise InputError(label, "no such file")
        if path.is_dir():
            raise InputError(label, "is a folder, not an image file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(label, f"cannot be read ({exc.strerror})") from None
        return decode_bytes(data, label)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(image), name or "image bytes")
    if isinstance(image, np.ndarray):
        return to_bgr(image, name or "image array", colour)
    if type(image).__module__.startswith("PIL."):
        pil = image
        if pil.mode not in ("RGB", "RGBA", "L"):
            pil = pil.convert("RGB")
        return to_bgr(np.asarray(pil), name or "PIL image", colour="rgb")
    raise InputError(name or "image", f"unsupported type {type(image).__name__}; pass a path, bytes, a numpy array or a PIL image")
