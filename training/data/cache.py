"""The training cache format: one home for its layout, its writer and its reader.

Layout::

    manifest.json                 dataset, AU list, flow step and parameters (``write_manifest``)
    images/<key>/<frame>.jpg      aligned 200x200 faces (``write_frame``)
    flow/<key>/<frame>.npy        float16 (2, 200, 200) flow, pixels of the aligned canvas
    parts/<key>.npz               one finished sequence (``Part``: ``write_part`` / ``read_part``)

A part is written last and atomically: its file marks the sequence done. It records a
fingerprint of the inputs it was made from (``Part.inputs``), so a re-run reuses it only while
those are unchanged (a corrected label file redoes the sequences whose labels changed).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import geometry
from rtatl_sdk.contract.landmarks import N_LANDMARKS
from rtatl_sdk.errors import CacheError, InputError
from rtatl_sdk.io.files import atomic_write_bytes

CACHE_VERSION = 1
FLOW_STEP = 3
MANIFEST = "manifest.json"
PARTS = "parts"
#: the arrays every part has (``extra`` arrays are kept beside them under their own names)
CORE = ("frames", "labels", "landmarks", "matrices", "has_flow", "subject", "sequence", "skipped", "targets", "inputs")


@dataclass
class Part:
    """One finished sequence of a cache, per frame: frame numbers, hard labels (1, 0, -1
    unknown), aligned landmarks (N, 68, 2), alignment matrices (N, 2, 3), whether its flow is
    cached; optional soft training targets in [0, 1] (-1 unknown) that the loss uses in place of
    the labels; ``extra``: further named per-frame arrays (readers that do not know them ignore them)."""

    key: str
    subject: str
    sequence: str
    frames: np.ndarray
    labels: np.ndarray
    landmarks: np.ndarray
    matrices: np.ndarray
    has_flow: np.ndarray
    skipped: dict = field(default_factory=dict)  #: frames left out, by reason
    targets: np.ndarray | None = None
    inputs: str = ""  #: fingerprint of what the part was made from (``fingerprint``); "" unknown
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.frames)
        self.frames = np.asarray(self.frames, np.int64)
        self.labels = _rows(self.labels, n, np.int8)
        self.landmarks = np.asarray(self.landmarks, np.float32).reshape(n, N_LANDMARKS, 2)
        self.matrices = np.asarray(self.matrices, np.float32).reshape(n, 2, 3)
        self.has_flow = np.asarray(self.has_flow, bool).reshape(n)
        if self.targets is not None:
            self.targets = _rows(self.targets, n, np.float32)
            if self.targets.shape != self.labels.shape:
                raise CacheError(f"{self.key}: targets {self.targets.shape} do not match labels {self.labels.shape}")
        for k in self.extra:
            if k in CORE:
                raise CacheError(f"{self.key}: extra array {k!r} would replace a cache array")

    def __len__(self) -> int:
        return len(self.frames)


def _rows(a, n: int, dtype) -> np.ndarray:
    """``a`` as (n, columns); a part without frames keeps its (0, columns) shape (reshape cannot
    infer the columns of an empty array)."""
    a = np.asarray(a, dtype)
    return a if n == 0 and a.ndim == 2 else a.reshape(n, -1)


def fingerprint(*items) -> str:
    """A short hash of what a part is made from (arrays by their bytes, anything else by its repr)."""
    h = hashlib.sha1()
    for x in items:
        h.update(np.ascontiguousarray(x).tobytes() if isinstance(x, np.ndarray) else repr(x).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def part_path(cache: Path, key: str) -> Path:
    return Path(cache) / PARTS / f"{key}.npz"


def image_path(cache: Path, key: str, frame: int) -> Path:
    return Path(cache) / "images" / key / f"{frame}.jpg"


def flow_path(cache: Path, key: str, frame: int) -> Path:
    return Path(cache) / "flow" / key / f"{frame}.npy"


def has_part(cache: Path, key: str, inputs: str | None = None) -> bool:
    """Whether sequence ``key`` is done; with ``inputs``, done from those same inputs."""
    path = part_path(cache, key)
    if not path.is_file():
        return False
    if inputs is None:
        return True
    with np.load(path) as d:
        return "inputs" in d.files and str(d["inputs"]) == inputs


def write_part(cache: Path, part: Part) -> None:
    """Write ``part`` atomically (it then counts as done)."""
    arrays = dict(frames=part.frames, labels=part.labels, landmarks=part.landmarks, matrices=part.matrices,
                  has_flow=part.has_flow, subject=np.array(part.subject), sequence=np.array(part.sequence),
                  skipped=np.array(json.dumps(part.skipped or {})), inputs=np.array(part.inputs))
    if part.targets is not None:
        arrays["targets"] = part.targets
    arrays.update({k: np.asarray(v) for k, v in part.extra.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(part_path(cache, part.key), buf.getvalue())


def read_part(path: Path, extra: bool = True) -> Part:
    """The part in ``path`` (``extra=False`` leaves the extra arrays unread)."""
    path = Path(path)
    try:
        with np.load(path) as d:
            names = set(d.files)
            return Part(key=path.stem, subject=str(d["subject"]), sequence=str(d["sequence"]), frames=d["frames"],
                        labels=d["labels"], landmarks=d["landmarks"], matrices=d["matrices"], has_flow=d["has_flow"],
                        skipped=json.loads(str(d["skipped"])), targets=d["targets"] if "targets" in names else None,
                        inputs=str(d["inputs"]) if "inputs" in names else "",
                        extra={k: d[k] for k in sorted(names - set(CORE))} if extra else {})
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"{path}: not a readable cache part ({type(exc).__name__}: {exc}); delete it and re-run "
                         "the preprocessing") from None


def iter_parts(cache: Path, pattern: str = "*", extra: bool = True) -> Iterator[Part]:
    """The cache's parts in key order (``pattern``: a glob on the key, ``corpus_*`` say)."""
    for path in sorted((Path(cache) / PARTS).glob(f"{pattern}.npz")):
        yield read_part(path, extra)


def write_frame(cache: Path, key: str, frame: int, canvas: np.ndarray, flow: np.ndarray | None = None) -> None:
    """One cached frame: the aligned face as JPEG and, when given, its flow as float16 .npy."""
    import cv2

    ok, jpg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise CacheError(f"{key} frame {frame}: the aligned face could not be encoded as JPEG")
    atomic_write_bytes(image_path(cache, key, frame), jpg.tobytes())
    if flow is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(flow, np.float16))
        atomic_write_bytes(flow_path(cache, key, frame), buf.getvalue())


def write_manifest(cache: Path, dataset: str, aus, params=None) -> dict:
    """Create (or check) the cache's manifest; a cache made with other settings is refused.
    ``params``: the TV-L1 flow parameters (a dataclass), or None."""
    cache = Path(cache)
    (cache / PARTS).mkdir(parents=True, exist_ok=True)
    manifest = {"version": CACHE_VERSION, "dataset": dataset, "aus": list(aus), "flow_step": FLOW_STEP,
                "flow_params": asdict(params) if params else None, "aligned_size": geometry.ALIGNED_SIZE}
    mpath = cache / MANIFEST
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        if {k: old.get(k) for k in manifest} != manifest:
            raise CacheError(f"{cache}: holds a cache made with other settings ({old}); use a new folder")
    else:
        atomic_write_bytes(mpath, json.dumps(manifest, indent=1).encode())
    return manifest


def read_manifest(cache: Path) -> dict:
    mpath = Path(cache) / MANIFEST
    if not mpath.is_file():
        raise InputError(str(cache), "is not an rtatl-prep cache (no manifest.json)")
    return json.loads(mpath.read_text())
