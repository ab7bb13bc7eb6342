"""Turning what a user passes (path, bytes, numpy array, PIL image) into a BGR uint8 image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

#: File extensions read as still images and as videos, everywhere in the project (one home).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

#: The largest side and pixel count accepted, to refuse absurd allocations with a clear message
#: (checked from the file's header, before decoding).
MAX_SIDE = 16384
MAX_PIXELS = 120_000_000


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the file header of PNG, JPEG, GIF, BMP, WebP or TIFF data; None
    when the format is another or the header is unreadable (the decoder then decides)."""
    import struct

    try:
        if data[:4] in (b"II*\x00", b"MM\x00*"):  # TIFF: tags 256 / 257 of the first image directory
            end = "<" if data[:2] == b"II" else ">"
            ifd = struct.unpack(end + "I", data[4:8])[0]
            dims = {}
            for k in range(struct.unpack(end + "H", data[ifd:ifd + 2])[0]):
                e = ifd + 2 + 12 * k
                tag, typ = struct.unpack(end + "HH", data[e:e + 4])
                if tag in (256, 257):
                    dims[tag] = struct.unpack(end + ("H" if typ == 3 else "I"), data[e + 8:e + (10 if typ == 3 else 12)])[0]
            return (dims[256], dims[257]) if len(dims) == 2 else None
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            kind = data[12:16]
            if kind == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if kind == b"VP8L":
                b = int.from_bytes(data[21:25], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                seg = struct.unpack(">H", data[i + 2:i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                i += 2 + seg
    except struct.error:
        return None
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF Orientation tag (1-8) of JPEG data; 1 when absent or unreadable."""
    import struct

    if data[:2] != b"\xff\xd8":
        return 1
    i = 2
    try:
        while i + 4 < len(data) and data[i] == 0xFF:
            marker, seg = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker == 0xDA:  # start of scan: no metadata after this
                return 1
            if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
                t = i + 10
                end = "<" if data[t:t + 2] == b"II" else ">"
                ifd = t + struct.unpack(end + "I", data[t + 4:t + 8])[0]
                for k in range(struct.unpack(end + "H", data[ifd:ifd + 2])[0]):
                    e = ifd + 2 + 12 * k
                    if struct.unpack(end + "H", data[e:e + 2])[0] == 0x0112:
                        value = struct.unpack(end + "H", data[e + 8:e + 10])[0]
                        return value if 1 <= value <= 8 else 1
                return 1
            i += 2 + seg
    except struct.error:
        return 1
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into the upright image an EXIF Orientation tag describes."""
    import cv2

    if orientation in (5, 6, 7, 8):
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE if orientation in (5, 6, 7) else cv2.ROTATE_90_COUNTERCLOCKWISE)
    if orientation in (2, 5):
        img = img[:, ::-1]
    elif orientation in (4, 7):
        img = img[::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    return np.ascontiguousarray(img)


def decode_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to upright BGR uint8, or raise InputError.

    The size is checked from the header before any pixel is decoded, and the EXIF orientation
    is applied, so an image comes out the way viewers display it."""
    import cv2

    if len(data) == 0:
        raise InputError(name, "is empty (0 bytes)")
    size = header_size(data)
    if size is not None and (max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS):
        raise InputError(name, f"is {size[0]}x{size[1]}; sides above {MAX_SIDE} pixels and images above "
                         f"{MAX_PIXELS // 1_000_000} megapixels are not supported")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # keeps 16-bit and alpha; ignores EXIF orientation
    except cv2.error as exc:  # some corrupt headers raise instead of returning None
        raise InputError(name, f"cannot be decoded as an image ({exc.__class__.__name__})") from None
    if img is None:
        raise InputError(name, "is not a decodable image (unknown format or corrupt data)")
    if img.dtype == np.uint16:  # 16-bit PNG/TIFF
        img = (img >> 8).astype(np.uint8)
    return to_bgr(apply_orientation(img, exif_orientation(data)), name, colour="bgr")


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
        if not path.is_file():  # a named pipe, a device, a socket: reading could block forever
            raise InputError(label, "is not a regular file (a pipe or device is not read)")
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
        return _from_pil(image, name or "PIL image", colour)
    raise InputError(name or "image", f"unsupported type {type(image).__name__}; pass a path, bytes, a numpy array or a PIL image")


def _from_pil(pil, name: str, colour: str) -> np.ndarray:
    """A PIL image -> upright BGR uint8 (its EXIF orientation applied, as for files); 16-bit and
    32-bit integer greys keep their high byte, as a 16-bit file does."""
    try:
        orientation = int(pil.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: the pixels are still usable
        orientation = 1
    orientation = orientation if 1 <= orientation <= 8 else 1
    if pil.mode.startswith("I;16") or pil.mode == "I":
        arr = np.asarray(pil).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(name, f"mode {pil.mode} values outside 0-65535 are not supported")
        return to_bgr(apply_orientation((arr >> 8).astype(np.uint8), orientation), name)
    if pil.mode not in ("RGB", "RGBA", "L"):
        pil = pil.convert("RGB")
    return to_bgr(apply_orientation(np.asarray(pil), orientation), name, colour="rgb")
