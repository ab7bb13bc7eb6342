"""A folder of face images as training data for the default model: who is who, which emotion.

Layout read (``../shared/faces`` is one instance; a user's own folder works the same way):

* any image file below ``DIR`` (``rtatl_sdk.io.images.IMAGE_EXTENSIONS``), found recursively;
* optionally a ``labels.csv`` in any folder with the columns ``image, identity, emotion``
  (``image`` relative to that folder; ``emotion`` may be empty). Images without a row are
  their own identity (the file stem) with no emotion.

Emotion names are the eight of the corpus (``EMOTIONS``); anything else is an error naming the
file and line, so a typo cannot silently drop a label. The identity-disjoint validation split
is a seeded hash of the identity: stable when images are added, and never splits a person.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from rtatl_sdk.errors import InputError
from rtatl_sdk.io.images import IMAGE_EXTENSIONS

EMOTIONS = ("neutral", "happiness", "surprise", "anger", "sadness", "fear", "disgust", "contempt")
LABELS_FILE = "labels.csv"
_AMBIGUOUS = {"", "ambiguous", "unknown", "none"}
PAD = 0.3  #: tight face crops: pad by this share of their larger side before face detection


@dataclass(frozen=True)
class FaceRecord:
    path: Path
    identity: str
    emotion: str  #: one of EMOTIONS, or "" when unknown


def _read_labels(path: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "identity"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(str(path), f"has no column(s) {sorted(missing)} (needs image, identity[, emotion])")
        for row in reader:
            line = reader.line_num
            image, identity = (row.get("image") or "").strip(), (row.get("identity") or "").strip()
            emotion = (row.get("emotion") or "").strip().lower()
            if not image or not identity:
                raise InputError(f"{path}:{line}", "empty image or identity")
            if emotion in _AMBIGUOUS:
                emotion = ""
            elif emotion not in EMOTIONS:
                raise InputError(f"{path}:{line}", f"emotion {emotion!r} is not one of {', '.join(EMOTIONS)} (or empty)")
            if image in out:
                raise InputError(f"{path}:{line}", f"image {image!r} is listed twice")
            out[image] = (identity, emotion)
    return out


def read_corpus(root: Path) -> tuple[list[FaceRecord], dict]:
    """All face images below ``root`` with identity and emotion; and counts of what was read."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "is not a folder of face images")
    exts = tuple(sorted(IMAGE_EXTENSIONS))
    labelled: dict[Path, tuple[str, str]] = {}
    listed_missing = 0
    for lab in sorted(root.rglob(LABELS_FILE)):
        for image, (identity, emotion) in _read_labels(lab).items():
            p = (lab.parent / image).resolve()
            if not p.is_file():
                listed_missing += 1
                continue
            labelled[p] = (f"{lab.parent.relative_to(root)}/{identity}", emotion)
    records = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in exts:
            continue
        identity, emotion = labelled.get(p.resolve(), (f"{p.parent.relative_to(root)}/{p.stem}", ""))
        records.append(FaceRecord(p, identity, emotion))
    if not records:
        raise InputError(str(root), f"holds no images ({', '.join(exts)})")
    counts = {"images": len(records), "identities": len({r.identity for r in records}),
              "with_emotion": sum(bool(r.emotion) for r in records), "listed_but_missing": listed_missing}
    return records, counts


def padded(img, share: float = PAD):
    """``img`` with an edge-replicated border of ``share`` of its larger side: tight crops cut the
    chin and forehead, and the face detector needs context around the face."""
    import cv2

    p = int(round(share * max(img.shape[:2])))
    return cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)


def is_validation(identity: str, fraction: float, seed: int = 0) -> bool:
    """Seeded hash split of identities: the same person always lands on the same side."""
    h = hashlib.sha1(f"{seed}:{identity}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


#: the two identity halves of a corpus (``identity_half``): a trunk is pretrained on one, the
#: Table 1 analogue trains and validates on the other, so no evaluation person was ever seen
HALVES = ("pretrain", "analogue")


def identity_half(identity: str, seed: int = 0) -> str:
    """Which of ``HALVES`` a person belongs to (a seeded hash independent of ``is_validation``'s)."""
    h = hashlib.sha1(f"half:{seed}:{identity}".encode()).digest()
    return HALVES[int.from_bytes(h[:8], "big") >= 2**63]


def split_records(records: list[FaceRecord], fraction: float, seed: int = 0) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """(train, validation) with no identity on both sides."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"validation fraction {fraction}", "must lie strictly between 0 and 1")
    val = [r for r in records if is_validation(r.identity, fraction, seed)]
    train = [r for r in records if not is_validation(r.identity, fraction, seed)]
    return train, val
