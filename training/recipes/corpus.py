"""A folder of face images as training data for the default model: who is who, which emotion.

Layout read (``../shared/faces`` is one instance; a user's own folder works the same way):

* any image file below ``DIR`` (``rtatl_sdk.io.images.IMAGE_EXTENSIONS``), found recursively;
* optionally a ``labels.csv`` in any folder with the columns ``image, identity, emotion``
  (``image`` relative to that folder; ``emotion`` may be empty). Images without a row are
  their own identity (the file stem) with no emotion. Optional further columns (FER+'s layout):
  ``votes`` (crowd votes, ``neutral:6;surprise:1;unknown:2``: their shares become soft labels),
  ``split`` (``train``/``validation``/``test``: the corpus's own split, used instead of the
  identity hash), ``same_as`` (the first image with identical pixels: the copy is left out, so
  one picture never lands on two sides). An empty ``identity`` is allowed where ``votes`` is
  given (such corpora have none): the image is then its own identity.

Emotion names are the eight of the corpus (``EMOTIONS``); anything else is an error naming the
file and line, so a typo cannot silently drop a label. The identity-disjoint validation split
is a seeded hash of the identity: stable when images are added, and never splits a person.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from rtatl_sdk.contract.emotions import EMOTIONS, vote_shares  # noqa: E402
from rtatl_sdk.errors import InputError
from rtatl_sdk.io.images import IMAGE_EXTENSIONS

LABELS_FILE = "labels.csv"
_AMBIGUOUS = frozenset({"", "ambiguous", "unknown", "none"})
PAD = 0.3  #: tight face crops: pad by this share of their larger side before face detection


@dataclass(frozen=True)
class FaceRecord:
    path: Path
    identity: str
    emotion: str  #: one of EMOTIONS, or "" when unknown (with votes: their plurality, "" on a tie)
    #: crowd vote shares over EMOTIONS (sum 1), or None where the corpus has one label per image
    votes: tuple[float, ...] | None = None
    split: str = ""  #: the corpus's own split (train / validation / test), "" where it has none


SPLITS = MappingProxyType({"train": "train", "validation": "val", "val": "val", "test": "test", "publictest": "val",
                           "privatetest": "test", "training": "train"})


def parse_votes(text: str, where: str) -> tuple[float, ...] | None:
    """``neutral:6;surprise:1;unknown:2`` -> shares over EMOTIONS; an unreadable entry is an error."""
    votes: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in text.split(";"))):
        name, sep, count = item.partition(":")
        try:
            n = float(count)
        except ValueError:
            n = -1.0
        if not sep or n < 0 or n != n:
            raise InputError(where, f"vote {item!r} is not NAME:COUNT")
        votes[name.strip().lower()] = votes.get(name.strip().lower(), 0.0) + n
    shares = vote_shares(votes)
    return None if shares is None else tuple(float(x) for x in shares)


def _read_labels(path: Path) -> tuple[dict[str, tuple], set[str]]:
    """(image -> (identity, emotion, votes, split), the images that are copies (``same_as``): left out)."""
    out: dict[str, tuple] = {}
    copies: set[str] = set()
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"image", "identity"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(str(path), f"has no column(s) {sorted(missing)} (needs image, identity[, emotion])")
        for row in reader:
            line = reader.line_num
            image, identity = (row.get("image") or "").strip(), (row.get("identity") or "").strip()
            emotion = (row.get("emotion") or "").strip().lower()
            votes = parse_votes(row["votes"], f"{path}:{line}") if (row.get("votes") or "").strip() else None
            split = (row.get("split") or "").strip().lower()
            if split and split not in SPLITS:
                raise InputError(f"{path}:{line}", f"split {split!r} is not one of train, validation, test")
            if (row.get("same_as") or "").strip():
                copies.add(image)  # an identical copy of an earlier image: only the first copy is used
                continue
            if image and not identity and votes is not None:
                identity = Path(image).stem
            if not image or not identity:
                raise InputError(f"{path}:{line}", "empty image or identity")
            if emotion in _AMBIGUOUS:
                emotion = ""
            elif emotion not in EMOTIONS:
                raise InputError(f"{path}:{line}", f"emotion {emotion!r} is not one of {', '.join(EMOTIONS)} (or empty)")
            if image in out:
                raise InputError(f"{path}:{line}", f"image {image!r} is listed twice")
            out[image] = (identity, emotion, votes, SPLITS.get(split, ""))
    return out, copies


def read_corpus(root: Path) -> tuple[list[FaceRecord], dict]:
    """All face images below ``root`` with identity and emotion; and counts of what was read."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(str(root), "is not a folder of face images")
    exts = tuple(sorted(IMAGE_EXTENSIONS))
    labelled: dict[Path, tuple] = {}
    copies: set[Path] = set()
    listed_missing = 0
    for lab in sorted(root.rglob(LABELS_FILE)):
        rows, copied = _read_labels(lab)
        copies |= {(lab.parent / image).resolve() for image in copied}
        for image, (identity, emotion, votes, split) in rows.items():
            p = (lab.parent / image).resolve()
            if not p.is_file():
                listed_missing += 1
                continue
            labelled[p] = (f"{lab.parent.relative_to(root)}/{identity}", emotion, votes, split)
    records = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in exts or p.resolve() in copies:
            continue
        identity, emotion, votes, split = labelled.get(p.resolve(), (f"{p.parent.relative_to(root)}/{p.stem}", "", None, ""))
        records.append(FaceRecord(p, identity, emotion, votes, split))
    if not records:
        raise InputError(str(root), f"holds no images ({', '.join(exts)})")
    counts = {"images": len(records), "identities": len({r.identity for r in records}),
              "with_emotion": sum(bool(r.emotion) for r in records), "with_votes": sum(r.votes is not None for r in records),
              "copies_left_out": len(copies), "listed_but_missing": listed_missing}
    return records, counts


def cap_per_emotion(records: list[FaceRecord], cap: int | None, seed: int = 0) -> list[FaceRecord]:
    """At most ``cap`` of the crowd-voted records per plurality emotion (a seeded draw; records
    without votes, and ties, are all kept): a voted corpus's neutral and happy faces would
    otherwise outnumber its rare expressions by 40 to 1. None: no cap."""
    if cap is None:
        return records
    rng = np.random.default_rng([seed, 29])
    keep = set(range(len(records)))
    for emo in EMOTIONS:
        idx = [i for i, r in enumerate(records) if r.votes is not None and r.emotion == emo]
        if len(idx) > cap:
            keep -= set(int(i) for i in rng.choice(idx, size=len(idx) - cap, replace=False))
    return [r for i, r in enumerate(records) if i in keep]


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
    """(train, validation) with no identity on both sides; records with the corpus's own split
    follow it (its test records are on neither side: ``test_records``)."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"validation fraction {fraction}", "must lie strictly between 0 and 1")

    def side(r: FaceRecord) -> str:
        return r.split or ("val" if is_validation(r.identity, fraction, seed) else "train")

    return [r for r in records if side(r) == "train"], [r for r in records if side(r) == "val"]


def test_records(records: list[FaceRecord]) -> list[FaceRecord]:
    """The records of the corpus's own test split (never trained on, never used for selection)."""
    return [r for r in records if r.split == "test"]
