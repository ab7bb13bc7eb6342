"""Small datasets laid out exactly like BP4D, DISFA and an unlabelled folder, made from real
face video frames (the labels are synthetic; the layouts and formats are the real ones).

Labels: frames taken from the smiling part of a source clip are labelled AU6 and AU12 present
(``smile_from`` frame index onwards), other AUs are random, and some BP4D entries are 9
(unknown). This gives the training smoke test something learnable; it is not FACS coding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rtatl_sdk.contract.au import AU_SETS

# every AU column of the real BP4D AU_OCC files, not only the 12 evaluated ones
BP4D_CSV_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 28)


def _read_frames(video: Path, limit: int | None = None) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    while limit is None or len(frames) < limit:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    if not frames:
        raise FileNotFoundError(f"{video}: no frames could be read")
    return frames


class _Source:
    """Cycles through the frames of the source clips; knows which frames show a smile."""

    def __init__(self, videos: list[Path], smile_from: dict[str, int] | None = None, seed: int = 0):
        self.clips = [(Path(v).name, _read_frames(Path(v), 240)) for v in videos]
        self.smile_from = smile_from or {"single_face.mp4": 25}
        self.rng = np.random.default_rng(seed)

    def run(self, n: int, clip: int):
        name, frames = self.clips[clip % len(self.clips)]
        start = int(self.rng.integers(0, max(1, len(frames) - n)))
        idx = [(start + k) % len(frames) for k in range(n)]
        smile = [name in self.smile_from and i >= self.smile_from[name] for i in idx]
        return [frames[i] for i in idx], smile

    def labels(self, smile: list[bool], aus, p: float = 0.2) -> np.ndarray:
        lab = (self.rng.random((len(smile), len(aus))) < p).astype(np.int64)
        for col, au in enumerate(aus):
            if au in (6, 12):
                lab[:, col] = smile
        return lab


def make_bp4d(root: Path, videos: list[Path], subjects=("F001", "M001", "F003", "M002", "F004", "M003"),
              tasks=("T1", "T2"), frames: int = 8, seed: int = 0, unknown_rate: float = 0.03,
              drop_images: int = 1) -> Path:
    """``root/AUCoding/AU_OCC/F001_T1.csv`` and ``root/images/F001/T1/<4-digit frame>.jpg``.
    Three more frames than labelled are written per task (flow targets need frame t+3);
    ``drop_images`` labelled frames per dataset have no image file (real BP4D has such gaps)."""
    import cv2

    root = Path(root)
    src = _Source(videos, seed=seed)
    label_dir = root / "AUCoding" / "AU_OCC"
    label_dir.mkdir(parents=True, exist_ok=True)
    dropped = 0
    for si, subject in enumerate(subjects):
        for ti, task in enumerate(tasks):
            imgs, smile = src.run(frames + 3, si * len(tasks) + ti)
            first = int(src.rng.integers(100, 3000))
            folder = root / "images" / subject / task
            folder.mkdir(parents=True, exist_ok=True)
            for k, img in enumerate(imgs):
                cv2.imwrite(str(folder / f"{first + k:04d}.jpg"), img)
            lab = src.labels(smile[:frames], BP4D_CSV_AUS)
            lab[src.rng.random(lab.shape) < unknown_rate] = 9
            rows = ["0," + ",".join(str(a) for a in BP4D_CSV_AUS)]
            rows += [f"{first + k}," + ",".join(str(v) for v in lab[k]) for k in range(frames)]
            (label_dir / f"{subject}_{task}.csv").write_text("\n".join(rows) + "\n")
            if dropped < drop_images:
                (folder / f"{first + frames // 2:04d}.jpg").unlink()
                dropped += 1
    return root


def make_disfa(root: Path, videos: list[Path], subjects=("SN001", "SN006", "SN003"), frames: int = 12, seed: int = 0) -> Path:
    """``root/ActionUnit_Labels/SN001/SN001_au1.txt`` (1-based ``frame,intensity`` lines) and
    ``root/Videos_LeftCamera/LeftVideoSN001_comp.avi``."""
    import cv2

    root = Path(root)
    src = _Source(videos, seed=seed + 1)
    aus = AU_SETS["DISFA"]
    (root / "Videos_LeftCamera").mkdir(parents=True, exist_ok=True)
    for si, subject in enumerate(subjects):
        imgs, smile = src.run(frames, si)
        h, w = imgs[0].shape[:2]
        out = cv2.VideoWriter(str(root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi"),
                              cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (w, h))
        for img in imgs:
            out.write(img)
        out.release()
        occ = src.labels(smile, aus)
        intensity = np.where(occ == 1, src.rng.integers(2, 6, occ.shape), src.rng.integers(0, 2, occ.shape))
        d = root / "ActionUnit_Labels" / subject
        d.mkdir(parents=True, exist_ok=True)
        for col, au in enumerate(aus):
            lines = [f"{k + 1},{intensity[k, col]}" for k in range(frames)]
            (d / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_unlabelled(root: Path, videos: list[Path], n: int = 12, seed: int = 0) -> Path:
    """A flat folder of face images with arbitrary names (EmotioNet-style)."""
    import cv2

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    src = _Source(videos, seed=seed + 2)
    for k in range(n):
        (img,), _ = src.run(1, k)
        cv2.imwrite(str(root / f"img_{k:06d}.jpg"), img)
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-synth", description=__doc__)
    ap.add_argument("kind", choices=["BP4D", "DISFA", "unlabelled"])
    ap.add_argument("root", type=Path)
    ap.add_argument("--videos", type=Path, nargs="+", required=True, help="real face clips to take frames from")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.kind == "BP4D":
        make_bp4d(args.root, args.videos, frames=args.frames, seed=args.seed)
    elif args.kind == "DISFA":
        make_disfa(args.root, args.videos, frames=args.frames, seed=args.seed)
    else:
        make_unlabelled(args.root, args.videos, n=args.frames, seed=args.seed)
    print(args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
