"""Readers of the datasets' own on-disk formats (facts/datasets.md sec. 2).

Each reader yields :class:`Sequence` objects: the frames of one video/task of one subject with
their labels (1 = present, 0 = absent, -1 = unknown) and where each frame's pixels are.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import InputError
from rtatl_sdk.io.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

#: the SDK's image extensions, .jpg (BP4D's) first: tried in this order for a frame's image
IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS, key=lambda e: (e != ".jpg", e)))


@dataclass
class Sequence:
    """Frames of one subject's task/video, in frame order."""

    dataset: str
    subject: str
    name: str  #: e.g. "T1" (BP4D task) or "left" (DISFA camera)
    frames: np.ndarray  #: (n,) the dataset's own frame numbers
    labels: np.ndarray  #: (n, N) int8: 1, 0 or -1 (unknown)
    images: list[Path] | None = None  #: per-frame image files (BP4D, folders)
    video: Path | None = None  #: one video whose frame k holds frame number ``frames[k] - video_base``
    video_base: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  #: reason -> count
    #: (n, N) float32 AU intensities 0-5 where the dataset codes them (DISFA), -1 unknown; None elsewhere
    intensities: np.ndarray | None = None
    temporal: bool = True  #: consecutive frames of one video (False: unrelated still images)

    @property
    def key(self) -> str:
        return f"{self.subject}_{self.name}"

    def later_source(self, i: int, step: int):
        """Where the pixels of the frame ``step`` frames after frame i are, or None."""
        if not self.temporal:
            return None
        target = int(self.frames[i]) + step
        if self.video is not None:
            return ("video", self.video, target - self.video_base)
        if self.images is not None:
            p = _frame_path(self.images[i].parent, target, like=self.images[i])
            return ("image", p) if p is not None else None
        return None

    def source(self, i: int):
        if self.video is not None:
            return ("video", self.video, int(self.frames[i]) - self.video_base)
        return ("image", self.images[i])


def _frame_path(folder: Path, frame: int, like: Path | None = None) -> Path | None:
    """The image of ``frame`` in ``folder``: 'N', 4- or 5-digit zero-padded, any image suffix."""
    names = [str(frame), f"{frame:04d}", f"{frame:05d}"]
    suffixes = (like.suffix,) if like is not None else IMAGE_SUFFIXES
    for n in names:
        for s in suffixes:
            p = folder / f"{n}{s}"
            if p.is_file():
                return p
    return None


# --- BP4D ---------------------------------------------------------------------------------
BP4D_LABEL_DIR = Path("AUCoding") / "AU_OCC"
_BP4D_NAME = re.compile(r"^([FM]\d{3})_(T\d+)\.csv$")


def read_bp4d_labels(path: Path, aus=AU_SETS["BP4D"]) -> tuple[np.ndarray, np.ndarray]:
    """One ``AU_OCC/F001_T1.csv``: header row, first column the frame number, AU columns by
    number, values 0/1 and 9 (= unknown, returned as -1). Returns (frames, labels)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:  # BP4D's files are ASCII: another encoding is another file
        raise InputError(str(path), f"is not text in UTF-8/ASCII (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise InputError(str(path), f"is not a readable CSV ({exc})") from None
    if not rows:
        raise InputError(str(path), "is empty; expected a header row and one row per frame")
    header = [h.strip() for h in rows[0]]
    cols = {}
    for au in aus:
        if str(au) not in header[1:]:
            raise InputError(str(path), f"has no column for AU {au} (header: {','.join(header[:16])}...)")
        cols[au] = header.index(str(au))
    frames, labels = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError(f"{path}:{line_no}", f"has {len(row)} fields, the header has {len(header)}")
        try:
            frames.append(int(row[0]))
            vals = [int(row[cols[au]]) for au in aus]
        except ValueError:
            raise InputError(f"{path}:{line_no}", f"non-integer value in {row[:4]}...") from None
        bad = [v for v in vals if v not in (0, 1, 9)]
        if bad:
            raise InputError(f"{path}:{line_no}", f"label {bad[0]} is not 0, 1 or 9")
        labels.append([-1 if v == 9 else v for v in vals])
    frames_a = np.asarray(frames, dtype=np.int64)
    if len(np.unique(frames_a)) != len(frames_a):
        raise InputError(str(path), "lists a frame number more than once")
    return frames_a, np.asarray(labels, dtype=np.int8).reshape(len(frames), len(aus))


def read_bp4d(root: Path, images: Path | None = None, aus=AU_SETS["BP4D"], subjects=None) -> list[Sequence]:
    """BP4D: labels from ``root/AUCoding/AU_OCC``, frames from ``images/F001/T1/<frame>.jpg``
    (``images`` defaults to ``root/images``; 'N', '0N' 4-digit and 5-digit names are found).
    Frames whose image is missing are skipped and counted."""
    root = Path(root)
    label_dir = root / BP4D_LABEL_DIR
    if not label_dir.is_dir():
        raise InputError(str(root), f"is not a BP4D folder: {label_dir} does not exist")
    images = Path(images) if images else root / "images"
    seqs = []
    for path in sorted(label_dir.glob("*.csv")):
        m = _BP4D_NAME.match(path.name)
        if not m:
            log.warning("BP4D: ignoring %s (not named like F001_T1.csv)", path)
            continue
        subject, task = m.groups()
        if subjects is not None and subject not in subjects:
            continue
        frames, labels = read_bp4d_labels(path, aus)
        folder = images / subject / task
        paths, keep = [], []
        for i, f in enumerate(frames):
            p = _frame_path(folder, int(f))
            if p is not None:
                paths.append(p)
                keep.append(i)
        seq = Sequence("BP4D", subject, task, frames[keep], labels[keep], images=paths)
        if len(keep) < len(frames):
            seq.skipped["image file missing"] = len(frames) - len(keep)
            log.warning("BP4D %s: %d of %d labelled frames have no image in %s; skipped",
                        seq.key, len(frames) - len(keep), len(frames), folder)
        seqs.append(seq)
    if not seqs:
        raise InputError(str(label_dir), "contains no F###_T#.csv label files")
    return seqs


# --- DISFA --------------------------------------------------------------------------------
DISFA_LABEL_DIR = "ActionUnit_Labels"
DISFA_VIDEO_DIR = "Videos_LeftCamera"


def read_disfa_au_file(path: Path) -> dict[int, int]:
    """``SN001_au1.txt``: one ``frame,intensity`` line per frame, intensity an integer 0-5."""
    out: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:  # a stray byte becomes a bad line, named
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(",")
            if len(parts) != 2:
                raise InputError(f"{path}:{line_no}", f"expected 'frame,intensity', got {line!r}")
            try:
                frame, value = int(parts[0]), int(parts[1])
            except ValueError:
                raise InputError(f"{path}:{line_no}", f"non-integer field in {line!r}") from None
            if not 0 <= value <= 5:
                raise InputError(f"{path}:{line_no}", f"intensity {value} is outside 0-5")
            if frame in out:
                raise InputError(f"{path}:{line_no}", f"frame {frame} is listed twice")
            out[frame] = value
    if not out:
        raise InputError(str(path), "has no label lines")
    return out


def read_disfa(root: Path, aus=AU_SETS["DISFA"], subjects=None, threshold: int = 1) -> list[Sequence]:
    """DISFA: ``ActionUnit_Labels/SN001/SN001_au1.txt`` (1-based frames) and the left-camera
    video ``Videos_LeftCamera/LeftVideoSN001_comp.avi`` (frame k is video frame k-1).
    Positive = intensity > ``threshold`` (1, paper sec. 4.1)."""
    root = Path(root)
    label_dir = root / DISFA_LABEL_DIR
    if not label_dir.is_dir():
        raise InputError(str(root), f"is not a DISFA folder: {label_dir} does not exist")
    seqs = []
    for sdir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
        subject = sdir.name
        if subjects is not None and subject not in subjects:
            continue
        per_au = {}
        for au in aus:
            f = sdir / f"{subject}_au{au}.txt"
            if not f.is_file():
                raise InputError(str(f), f"missing: DISFA subject {subject} has no label file for AU {au}")
            per_au[au] = read_disfa_au_file(f)
        frames = sorted(per_au[aus[0]])
        for au in aus[1:]:
            if sorted(per_au[au]) != frames:
                raise InputError(str(sdir / f"{subject}_au{au}.txt"), f"lists other frames than {subject}_au{aus[0]}.txt")
        labels = np.array([[1 if per_au[au][f] > threshold else 0 for au in aus] for f in frames], dtype=np.int8)
        intensities = np.array([[per_au[au][f] for au in aus] for f in frames], dtype=np.float32)
        video = root / DISFA_VIDEO_DIR / f"LeftVideo{subject}_comp.avi"
        if not video.is_file():
            raise InputError(str(video), f"missing: the left-camera video of {subject}")
        seqs.append(Sequence("DISFA", subject, "left", np.asarray(frames, np.int64), labels, video=video, video_base=1,
                             intensities=intensities))
    if not seqs:
        raise InputError(str(label_dir), "contains no SN### subject folders")
    return seqs


# --- unlabelled ---------------------------------------------------------------------------
def read_image_folder(root: Path, n_aus: int, chunk: int = 500) -> list[Sequence]:
    """An unlabelled folder of face images (EmotioNet-style), searched recursively; every label
    is unknown. Split into chunks of ``chunk`` images for parallel preprocessing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(str(root), f"contains no images ({', '.join(IMAGE_SUFFIXES)})")
    seqs = []
    for c in range(0, len(files), chunk):
        part = files[c:c + chunk]
        seqs.append(Sequence("unlabelled", "unlabelled", f"part{c // chunk:05d}", np.arange(c, c + len(part)),
                             np.full((len(part), n_aus), -1, np.int8), images=part, temporal=False))
    return seqs
