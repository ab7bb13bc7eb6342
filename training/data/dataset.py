"""Training/evaluation samples from a preprocessed cache (see ``training.prep``).

Augmentation (training): a random 192 crop of the 200 canvas and a horizontal flip with
probability 0.5, applied consistently to the image, landmarks (left/right swapped), AU centres,
flow (mirrored, x negated) and labels (bilateral AUs: unchanged). Testing: the centre crop.
Randomness comes from (seed, epoch, index) only, so a resumed run sees identical samples.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rtatl_sdk import geometry, preprocess
from rtatl_sdk import landmarks as lm
from rtatl_sdk.errors import InputError

from ..flow import flip_flow

log = logging.getLogger(__name__)


class CacheIndex:
    """All finished sequences of a cache, as flat per-frame arrays."""

    def __init__(self, cache: Path, subjects: list[str] | None = None):
        cache = Path(cache)
        mpath = cache / "manifest.json"
        if not mpath.is_file():
            raise InputError(str(cache), "is not an rtatl-prep cache (no manifest.json)")
        self.root = cache
        self.manifest = json.loads(mpath.read_text())
        self.aus = tuple(self.manifest["aus"])
        keys, frames, labels, lms, flows, subs = [], [], [], [], [], []
        for part in sorted((cache / "parts").glob("*.npz")):
            with np.load(part) as d:
                subject = str(d["subject"])
                if subjects is not None and subject not in subjects:
                    continue
                n = len(d["frames"])
                keys += [part.stem] * n
                subs += [subject] * n
                frames.append(d["frames"])
                labels.append(d["labels"])
                lms.append(d["landmarks"])
                flows.append(d["has_flow"])
        if not keys:
            raise InputError(str(cache), f"has no finished sequences{' for subjects ' + ' '.join(subjects) if subjects else ''}")
        self.keys = np.array(keys)
        self.subjects = np.array(subs)
        self.frames = np.concatenate(frames)
        self.labels = np.concatenate(labels).astype(np.int64)
        self.landmarks = np.concatenate(lms).astype(np.float64)
        self.has_flow = np.concatenate(flows)

    def __len__(self) -> int:
        return len(self.frames)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.keys[i] / f"{self.frames[i]}.jpg"

    def flow_path(self, i: int) -> Path:
        return self.root / "flow" / self.keys[i] / f"{self.frames[i]}.npy"


def all_subjects(cache: Path) -> set[str]:
    out = set()
    for part in (Path(cache) / "parts").glob("*.npz"):
        with np.load(part) as d:
            out.add(str(d["subject"]))
    return out


class AUDataset:
    """A torch-style map dataset over a cache (returns numpy; ``collate`` makes tensors)."""

    def __init__(self, cache: Path, subjects: list[str] | None = None, train: bool = True, labelled: bool = True,
                 seed: int = 0, aus: tuple[int, ...] | None = None, colour_jitter: float = 0.0):
        self.index = CacheIndex(cache, subjects)
        self.aus = tuple(aus) if aus else self.index.aus
        missing = [a for a in self.aus if a not in self.index.aus]
        if missing:
            raise InputError(str(cache), f"has no labels for AUs {missing} (it has {list(self.index.aus)})")
        self.cols = [self.index.aus.index(a) for a in self.aus]
        self.train, self.labelled, self.seed, self.epoch = train, labelled, seed, 0
        self.colour_jitter = colour_jitter

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def augmentation(self, i: int) -> tuple[int, int, bool]:
        """(x0, y0, flip) for sample i in the current epoch."""
        if not self.train:
            o = geometry.CENTRE_CROP_OFFSET
            return o, o, False
        rng = np.random.default_rng([self.seed, self.epoch, i])
        span = geometry.ALIGNED_SIZE - geometry.CROP_SIZE
        x0, y0 = (int(v) for v in rng.integers(0, span + 1, 2))
        return x0, y0, bool(rng.random() < 0.5)

    def _jitter(self, rgb: np.ndarray, rng) -> np.ndarray:
        """Brightness, contrast and saturation each scaled by a factor in [1-j, 1+j]."""
        j = self.colour_jitter
        b, c, s = rng.uniform(1 - j, 1 + j, 3)
        x = rgb.astype(np.float32) * b
        x = (x - x.mean()) * c + x.mean()
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * s + grey
        return np.clip(x, 0, 255).astype(np.uint8)

    def __getitem__(self, i: int) -> dict:
        import cv2

        idx = self.index
        path = idx.image_path(i)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(str(path), "cached face image cannot be decoded (re-run rtatl-prep on a new cache)")
        x0, y0, flip = self.augmentation(i)
        s = geometry.CROP_SIZE
        crop = img[y0:y0 + s, x0:x0 + s, ::-1]  # BGR -> RGB
        pts = geometry.crop_points(idx.landmarks[i], (x0, y0))
        flow = np.zeros((2, s, s), np.float32)
        has_flow = bool(idx.has_flow[i])
        if has_flow:
            flow = np.load(idx.flow_path(i)).astype(np.float32)[:, y0:y0 + s, x0:x0 + s]
        if self.train and self.colour_jitter > 0:
            crop = self._jitter(crop, np.random.default_rng([self.seed, self.epoch, i, 1]))
        if flip:
            crop = crop[:, ::-1]
            pts = lm.flip_landmarks(pts, s)
            flow = flip_flow(flow)
        labels = idx.labels[i, self.cols] if self.labelled else np.full(len(self.aus), -1)
        return {
            "image": preprocess.normalise(np.ascontiguousarray(crop))[0],
            "centres": geometry.au_centres(pts, self.aus).astype(np.float32),
            "labels": labels.astype(np.float32),
            "labelled": self.labelled,
            "flow": np.ascontiguousarray(flow),
            "has_flow": has_flow,
            "index": i,
        }


def collate(samples: list[dict]) -> dict:
    import torch

    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if isinstance(vals[0], np.ndarray):
            out[k] = torch.from_numpy(np.stack(vals))
        else:
            out[k] = torch.tensor(vals)
    return out
