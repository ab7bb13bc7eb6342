"""Training/evaluation samples from a preprocessed cache (see ``training.prep``).

Augmentation (training): a random 192 crop of the 200 canvas and a horizontal flip with
probability 0.5, applied consistently to the image, landmarks (left/right swapped), AU centres,
flow (mirrored, x negated) and labels (bilateral AUs: unchanged). Testing: the centre crop.
Randomness comes from (seed, epoch, index) only, so a resumed run sees identical samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import geometry, preprocess
from rtatl_sdk.contract import landmarks as lm
from rtatl_sdk.contract.emotions import EMOTIONS
from rtatl_sdk.errors import InputError

from ..flow import flip_flow
from . import cache as cache_format
from .cache import iter_parts, read_manifest

log = logging.getLogger(__name__)


class CacheIndex:
    """All finished sequences of a cache, as flat per-frame arrays."""

    def __init__(self, cache: Path, subjects: list[str] | None = None):
        cache = Path(cache)
        self.root = cache
        self.manifest = read_manifest(cache)
        self.aus = tuple(self.manifest["aus"])
        keys, frames, labels, targets, lms, flows, subs, noface, intens, votes = [], [], [], [], [], [], [], [], [], []
        for part in iter_parts(cache):
            if subjects is not None and part.subject not in subjects:
                continue
            n = len(part)
            if "noface_labels" in part.extra:
                noface.append(part.extra["noface_labels"].reshape(-1, part.labels.shape[1]))
            if n == 0:  # a part in which no face was found: no frame to index
                continue
            keys += [part.key] * n
            subs += [part.subject] * n
            frames.append(part.frames)
            labels.append(part.labels)
            targets.append(part.targets if part.targets is not None else part.labels.astype(np.float32))
            lms.append(part.landmarks)
            flows.append(part.has_flow)
            intens.append(part.extra["intensities"].reshape(n, -1) if "intensities" in part.extra
                          else np.full(part.labels.shape, -1.0, np.float32))
            votes.append(part.extra["votes"].reshape(n, -1).astype(np.float32) if "votes" in part.extra
                         else np.full((n, len(EMOTIONS)), -1.0, np.float32))
        if not keys:
            raise InputError(str(cache), f"has no finished sequences{' for subjects ' + ' '.join(subjects) if subjects else ''}")
        self.keys = np.array(keys)
        self.subjects = np.array(subs)
        self.frames = np.concatenate(frames)
        self.labels = np.concatenate(labels).astype(np.int64)
        #: training targets: soft scores in [0, 1] where the cache has them, else the labels; -1 unknown
        self.targets = np.concatenate(targets).astype(np.float32)
        self.landmarks = np.concatenate(lms).astype(np.float64)
        self.has_flow = np.concatenate(flows)
        #: AU intensities 0-5 where the dataset codes them (DISFA), -1 unknown
        self.intensities = np.concatenate(intens).astype(np.float32)
        #: expression vote shares over ``rtatl_sdk.contract.emotions.EMOTIONS`` (rows sum to 1), -1 unknown
        self.votes = np.concatenate(votes).astype(np.float32)
        #: labels of the frames rtatl-prep found no face in (evaluation: predicted all absent)
        self.noface_labels = (np.concatenate(noface) if noface else np.zeros((0, len(self.aus)))).astype(np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the frames where ``mask`` is true (every per-frame array follows)."""
        mask = np.asarray(mask, bool)
        if mask.shape != (len(self),) or not mask.any():
            raise InputError(str(self.root), f"a frame selection must keep at least one of its {len(self)} frames")
        for k in ("keys", "subjects", "frames", "labels", "targets", "landmarks", "has_flow", "intensities", "votes"):
            setattr(self, k, getattr(self, k)[mask])

    def image_path(self, i: int) -> Path:
        return cache_format.image_path(self.root, self.keys[i], self.frames[i])

    def flow_path(self, i: int) -> Path:
        return cache_format.flow_path(self.root, self.keys[i], self.frames[i])


def all_subjects(cache: Path) -> set[str]:
    return {part.subject for part in iter_parts(cache, extra=False)}


@dataclass(frozen=True)
class Augment:
    """Training-time photometric and geometric augmentation (all off by default, as in the paper).

    ``colour_jitter``: brightness/contrast/saturation factors in [1-j, 1+j]; ``greyscale``,
    ``blur``, ``jpeg``: probability of a grey image, a Gaussian blur (sigma 0.5-1.5 px), a JPEG
    re-encoding (quality 30-90); ``scale``: zoom of the aligned canvas about its centre by a
    factor in [1-s, 1+s] (landmarks, centres and flow follow)."""

    colour_jitter: float = 0.0
    greyscale: float = 0.0
    blur: float = 0.0
    jpeg: float = 0.0
    scale: float = 0.0

    def __post_init__(self):
        for k in ("greyscale", "blur", "jpeg"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise InputError(f"augment.{k}={getattr(self, k)}", "a probability must lie in [0, 1]")
        if not (0.0 <= self.colour_jitter < 1.0 and 0.0 <= self.scale < 0.5):
            raise InputError(f"augment {self}", "colour_jitter must lie in [0, 1) and scale in [0, 0.5)")


def _zoom(img: np.ndarray, pts: np.ndarray, flow: np.ndarray | None, s: float):
    """Zoom the canvas by ``s`` about its centre; landmarks and flow (vectors scale too) follow."""
    import cv2

    c = (img.shape[1] - 1) / 2
    m = np.array([[s, 0, (1 - s) * c], [0, s, (1 - s) * c]], np.float32)
    size = (img.shape[1], img.shape[0])
    img = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pts = (pts - c) * s + c
    if flow is not None:
        flow = np.stack([cv2.warpAffine(f, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                         for f in flow]) * s
    return img, pts, flow


class AUDataset:
    """A torch-style map dataset over a cache (returns numpy; ``collate`` makes tensors)."""

    def __init__(self, cache: Path, subjects: list[str] | None = None, train: bool = True, labelled: bool = True,
                 seed: int = 0, aus: tuple[int, ...] | None = None, colour_jitter: float = 0.0,
                 augment: Augment | None = None):
        self.index = CacheIndex(cache, subjects)
        self.aus = tuple(aus) if aus else self.index.aus
        missing = [a for a in self.aus if a not in self.index.aus]
        if missing:
            raise InputError(str(cache), f"has no labels for AUs {missing} (it has {list(self.index.aus)})")
        self.cols = [self.index.aus.index(a) for a in self.aus]
        self.train, self.labelled, self.seed, self.epoch = train, labelled, seed, 0
        self.augment = augment or Augment(colour_jitter=colour_jitter)

    @property
    def colour_jitter(self) -> float:
        return self.augment.colour_jitter

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def augmentation(self, i: int, epoch: int | None = None) -> tuple[int, int, bool]:
        """(x0, y0, flip) for sample i in ``epoch`` (default: the current one)."""
        if not self.train:
            o = geometry.CENTRE_CROP_OFFSET
            return o, o, False
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, i])
        span = geometry.ALIGNED_SIZE - geometry.CROP_SIZE
        x0, y0 = (int(v) for v in rng.integers(0, span + 1, 2))
        return x0, y0, bool(rng.random() < 0.5)

    def _jitter(self, rgb: np.ndarray, rng) -> np.ndarray:
        """Brightness, contrast and saturation each scaled by a factor in [1-j, 1+j]."""
        j = self.augment.colour_jitter
        b, c, s = rng.uniform(1 - j, 1 + j, 3)
        x = rgb.astype(np.float32) * b
        x = (x - x.mean()) * c + x.mean()
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * s + grey
        return np.clip(x, 0, 255).astype(np.uint8)

    def _photometric(self, rgb: np.ndarray, rng) -> np.ndarray:
        import cv2

        a = self.augment
        if a.colour_jitter > 0:
            rgb = self._jitter(rgb, rng)
        if a.greyscale and rng.random() < a.greyscale:
            rgb = np.repeat(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if a.blur and rng.random() < a.blur:
            rgb = cv2.GaussianBlur(np.ascontiguousarray(rgb), (0, 0), float(rng.uniform(0.5, 1.5)))
        if a.jpeg and rng.random() < a.jpeg:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
            rgb = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else rgb
        return rgb

    def __getitem__(self, key) -> dict:
        """Sample ``key``: an index in the current epoch, or ``(epoch, index)`` (how ``BatchStream``
        asks, so that one loader's workers serve several epochs)."""
        import cv2

        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        idx = self.index
        path = idx.image_path(i)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(str(path), "cached face image cannot be decoded (re-run rtatl-prep on a new cache)")
        x0, y0, flip = self.augmentation(i, epoch)
        s = geometry.CROP_SIZE
        pts = idx.landmarks[i]
        has_flow = bool(idx.has_flow[i])
        flow = np.load(idx.flow_path(i)).astype(np.float32) if has_flow else None
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        if self.train and self.augment.scale > 0:
            img, pts, flow = _zoom(img, pts, flow, float(rng.uniform(1 - self.augment.scale, 1 + self.augment.scale)))
        crop = img[y0:y0 + s, x0:x0 + s, ::-1]  # BGR -> RGB
        pts = geometry.crop_points(pts, (x0, y0))
        flow = flow[:, y0:y0 + s, x0:x0 + s] if flow is not None else np.zeros((2, s, s), np.float32)
        if self.train:
            crop = self._photometric(crop, rng)
        if flip:
            crop = crop[:, ::-1]
            pts = lm.flip_landmarks(pts, s)
            flow = flip_flow(flow)
        labels = idx.targets[i, self.cols] if self.labelled else np.full(len(self.aus), -1)
        intensity = idx.intensities[i, self.cols] if self.labelled else np.full(len(self.aus), -1.0)
        votes = idx.votes[i] if self.labelled else np.full(len(EMOTIONS), -1.0)
        return {
            "image": preprocess.normalise(np.ascontiguousarray(crop))[0],
            "centres": geometry.au_centres(pts, self.aus).astype(np.float32),
            "labels": labels.astype(np.float32),
            "intensity": np.asarray(intensity, np.float32),
            "emotions": np.asarray(votes, np.float32),
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
