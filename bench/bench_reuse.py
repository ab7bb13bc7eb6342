"""Keyframe reuse: how many AU inferences each ``ReuseConfig`` saves and how many AU decisions it
keeps, replayed offline on tracked faces of real clips (every frame inferred once, then each
rule applied to the recorded landmarks, thumbnails and probabilities exactly as
``rtatl_sdk.stream.temporal.KeyframeReuse`` applies it).

    python -m bench.bench_reuse [--clips media/WolfgangLanger_Pexels.mp4 media/single_face.mp4]

Prints a table (reused share, AU decisions equal to inferring every frame) and writes
out/bench/reuse.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from bench.common import MEDIA, header, save, table


def record(det, clip: Path) -> list:
    """Per frame: (crop landmarks, thumbnail, probabilities) of the largest tracked face, or None."""
    from rtatl_sdk.face.tracking import FaceTracker
    from rtatl_sdk.stream.temporal import _thumbnail
    from rtatl_sdk.stream.video import iter_frames

    tracker = FaceTracker(det.pipeline, det.detect_every, video_mode=det.options.landmark_tracking)
    seq = []
    for fr in iter_frames(clip):
        faces = [f for _, f in tracker(fr.image)] if fr.image is not None else []
        if not faces:
            seq.append(None)
            continue
        f = max(faces, key=lambda x: x.box.w * x.box.h)
        seq.append((f.crop_landmarks(), _thumbnail(f.crop()), det._outputs([f])[0].scores))
    tracker.close()
    return seq


def replay(seqs, thr: np.ndarray, cfg) -> tuple[float, float]:
    """(reused share, AU decisions equal to every-frame inference) of one ``ReuseConfig``."""
    from rtatl_sdk.stream.temporal import KeyframeReuse

    reused = agree = total = n = 0
    for seq in seqs:
        reuse = KeyframeReuse(cfg)
        for item in seq:
            if item is None:
                reuse([], [], None)  # a frame without the face: its track loses the keyframe
                continue
            pts, thumb, probs = item
            face = _Recorded(pts, thumb)
            got = reuse([face], [0], lambda faces, p=probs: [p])[0]
            agree += int(((got >= thr) == (probs >= thr)).sum())
            total += len(thr)
            n += 1
        reused += reuse.reused
    return reused / max(1, n), agree / max(1, total)


class _Recorded:
    """A recorded face as KeyframeReuse reads it (the thumbnail is already made)."""

    def __init__(self, pts, thumb):
        self._pts, self._thumb = pts, thumb

    def crop_landmarks(self):
        return self._pts

    def crop(self):
        return self._thumb.astype(np.uint8)


def main(argv=None) -> int:
    from rtatl_sdk import AUDetector
    from rtatl_sdk.options import ReuseConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, nargs="+", default=[MEDIA / "WolfgangLanger_Pexels.mp4", MEDIA / "single_face.mp4"])
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args(argv)
    det = AUDetector(args.model)
    seqs = [record(det, c) for c in args.clips]
    rows = []
    for shift, pixel, age in itertools.product((0.5, 1.0, 1.5, 2.0, 3.0), (3.0, 5.0, 1e9), (2, 3, 5)):
        cfg = ReuseConfig(shift, pixel, age)
        share, agree = replay(seqs, det.thresholds, cfg)
        rows.append({"max_shift px": shift, "max_pixel": "off" if pixel > 1e6 else pixel, "max_age": age,
                     "reused": f"{share:.3f}", "decisions equal": f"{agree:.4f}",
                     "default": "yes" if cfg == ReuseConfig() else ""})
    print("# keyframe reuse\n")
    print("\n".join(f"- {k}: {v}" for k, v in {**header(), "clips": [c.name for c in args.clips]}.items()))
    print()
    print(table(rows, list(rows[0])))
    save("reuse", {"rows": rows})
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
