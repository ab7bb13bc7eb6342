"""Video-mode Landmarkers per track (``landmark_tracking``, the default) against image mode on
every frame: how far the landmarks move, how many AU decisions change, and the time, per clip.

    python -m bench.bench_landmark_modes [--frames 240]

Clips: ``single_face.mp4``, ``WolfgangLanger_Pexels.mp4`` and the four-face pan of
``bench_faces.py``. Both modes run the same tracking, detector period and keyframe reuse; only
the Landmarker's mode differs. Landmark error: the mean |difference| of the 68 points, in % of
the face's width. Prints a table and writes out/bench/landmark_modes.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_faces import four_face_clip
from bench.common import MEDIA, header, save, table


def run(landmark_tracking: bool, clips: list[Path], frames: int) -> dict:
    from rtatl_sdk import AUDetector

    out = {}
    with AUDetector(landmark_tracking=landmark_tracking) as det:
        for clip in clips:
            t = time.perf_counter()
            out[clip.name] = (list(det.detect_video(clip, max_frames=frames)), time.perf_counter() - t)
    return out


def compare(video, image) -> dict:
    err, agree, same_count = [], [], []
    for a, b in zip(video, image):
        same_count.append(len(a.faces) == len(b.faces))
        for fa, fb in zip(a.faces, b.faces):
            err.append(np.abs(fa.landmarks - fb.landmarks).mean() / fb.box.w)
            agree.append(np.mean([x.present == y.present for x, y in zip(fa.aus.values(), fb.aus.values())]))
    return {"frames": len(video), "same_face_count_pct": 100 * float(np.mean(same_count)),
            "landmark_err_median_pct": 100 * float(np.median(err)), "landmark_err_max_pct": 100 * float(np.max(err)),
            "au_decisions_equal_pct": 100 * float(np.mean(agree))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=240)
    args = ap.parse_args(argv)
    info = header()
    print(info)
    tmp = Path(tempfile.mkdtemp(prefix="rtatl-bench-"))
    clips = [MEDIA / "single_face.mp4", MEDIA / "WolfgangLanger_Pexels.mp4", four_face_clip(tmp / "four.mp4", args.frames)]
    video, image = run(True, clips, args.frames), run(False, clips, args.frames)
    rows = [{"clip": c.name, **compare(video[c.name][0], image[c.name][0]), "video_mode_s": video[c.name][1],
             "image_mode_s": image[c.name][1]} for c in clips]
    print(table(rows, ["clip", "frames", "same_face_count_pct", "landmark_err_median_pct", "landmark_err_max_pct",
                       "au_decisions_equal_pct", "video_mode_s", "image_mode_s"]))
    save("landmark_modes", {"header": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
