"""End to end: rtatl-detect's pipeline on a video (frames/s) and a folder (images/s), peak
memory, and the peer in the same run: MediaPipe Face Landmarker with blendshapes alone on the
same video, decoding included on both sides (our pipeline contains it, so it is our floor), with
the ratio ours/peer. ``bench_video.py`` is the fuller side-by-side (interleaved repeats, engines,
tracking and reuse settings, decisions against per-frame detection).

    python -m bench.bench_e2e [--model PATH] [--video PATH] [--frames 200]

Prints a table and writes out/bench/e2e.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import MEDIA, header, peak_rss_mb, save, table


def peer_fps(video: Path, frames: int) -> float:
    """MediaPipe Face Landmarker (video mode, blendshapes on) on full frames."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from rtatl_sdk import store
    from rtatl_sdk.stream.video import iter_frames

    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(store.resolve(store.FACE_LANDMARKER))),
                                        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
    lm = vision.FaceLandmarker.create_from_options(opts)
    n, t = 0, time.perf_counter()
    for i, frame in enumerate(iter_frames(video, max_frames=frames)):  # decoding counted, as it is for ours
        lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame.image[:, :, ::-1].copy()), int(i * 1000 / 30))
        n += 1
    dt = time.perf_counter() - t
    lm.close()
    return n / dt


def main(argv=None) -> int:
    from rtatl_sdk import AUDetector

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="default: the bundled model (int8 on CPU when present)")
    ap.add_argument("--video", type=Path, default=MEDIA / "WolfgangLanger_Pexels.mp4")
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args(argv)
    head = header()
    rows = []
    det = AUDetector(args.model)
    head["model"] = str(det.model_path)
    list(det.detect_video(args.video, max_frames=5))  # warm-up
    t = time.perf_counter()
    n = sum(1 for _ in det.detect_video(args.video, max_frames=args.frames))
    ours = n / (time.perf_counter() - t)
    rows.append({"run": f"ours: video {args.video.name} ({n} frames)", "per_second": ours})
    images = [p for p in sorted(MEDIA.iterdir()) if p.suffix.lower() in (".jpg", ".png")]
    t = time.perf_counter()
    faces = sum(len(det.detect(p)) for p in images * 3)
    rows.append({"run": f"ours: {len(images) * 3} images ({faces} faces)", "per_second": len(images) * 3 / (time.perf_counter() - t)})
    peer = peer_fps(args.video, args.frames)
    rows.append({"run": "peer: MediaPipe landmarker + blendshapes alone, video", "per_second": peer})
    rows.append({"run": "ratio ours/peer (video)", "per_second": ours / peer})
    head["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("# end to end\n")
    print("\n".join(f"- {k}: {v}" for k, v in head.items()))
    print()
    print(table(rows, ["run", "per_second"]))
    save("e2e", {"header": head, "rows": rows})
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
