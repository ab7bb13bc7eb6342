"""Where each millisecond of a video frame goes, the Python side included (steady state).

    python -m bench.bench_frame_profile [--clip media/WolfgangLanger_Pexels.mp4] [--frames 200] [--threads 0]

Runs ``AUDetector.detect_video`` with every stage in one thread (``lookahead=0``) under cProfile,
skips the first ``--skip`` frames (start-up, first detection), and prints the time per frame of
each part: MediaPipe's Landmarker, the face detector, the AU engine, head pose and gaze, alignment
and preprocessing, tracking, reuse checks, results (pydantic), decoding, and the rest of the
Python. With the stages in one thread the parts add up to the frame; the default pipelined run
overlaps face finding with the AU model, so its frame costs less than the sum. Writes
out/bench/frame_profile.json.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

from bench.common import MEDIA, header, save, table

#: (part, test on a Python function's (file, name)); the first that matches takes the function's own
#: time; a built-in (C) function's time goes to the part of the Python function that called it
PARTS = (
    ("waiting for the decoded frame", lambda f, n: "stream/state" in f and n == "prefetch" or f.endswith("queue.py")),
    ("Landmarker (MediaPipe)", lambda f, n: "mediapipe" in f or "face/landmarker" in f),
    ("AU engine", lambda f, n: "engines/" in f),
    ("face detector", lambda f, n: "face/detector" in f),
    ("pose and gaze", lambda f, n: "face/pose" in f),
    ("alignment and preprocessing", lambda f, n: "contract/" in f),
    ("tracking", lambda f, n: "face/tracking" in f or "face/pipeline" in f or "face/boxes" in f),
    ("reuse, calibration and smoothing", lambda f, n: "stream/temporal" in f or "stream/state" in f),
    ("results (pydantic)", lambda f, n: "pydantic" in f or "results.py" in f),
    ("the detector's per-frame Python", lambda f, n: "rtatl_sdk/detector.py" in f),
)


def _part(key, stats, depth: int = 0) -> list[tuple[str, float]]:
    """[(part, share)] of one profiled function: by its own file, or (a built-in, or a library's
    function) by its callers', up the call chain to the first function of a part."""
    file, _line, name = key
    file = file.replace("\\", "/")
    part = next((p for p, test in PARTS if test(file, name)), None) if file != "~" else None
    if part is not None:
        return [(part, 1.0)]
    callers = stats.stats[key][4] if key in stats.stats else {}
    total = sum(c[2] for c in callers.values())
    if depth > 6 or not callers or total <= 0:
        return [("other Python (numpy, threads, glue)", 1.0)]
    out = []
    for ck, c in callers.items():
        out += [(p, w * c[2] / total) for p, w in _part(ck, stats, depth + 1)]
    return out


def categorise(stats: pstats.Stats) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        for part, share in _part(key, stats):
            out[part] = out.get(part, 0.0) + tottime * share
    return out


def main(argv=None) -> int:
    from rtatl_sdk import AUDetector

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=MEDIA / "WolfgangLanger_Pexels.mp4")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--skip", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="AU engine threads (0: the SDK's choice)")
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    with AUDetector(args.model, threads=args.threads) as det:
        stream = det.detect_video(args.clip, max_frames=args.frames, lookahead=0)
        for _ in range(args.skip):
            next(stream)
        prof = cProfile.Profile()
        n, faces = 0, 0
        t0 = time.perf_counter()
        prof.enable()
        for fr in stream:
            n += 1
            faces += len(fr.faces)
        prof.disable()
        wall = time.perf_counter() - t0
        threads = det.engine_threads
    parts = categorise(pstats.Stats(prof))
    total = sum(parts.values())
    rows = [{"part": p, "ms per frame": round(1000 * v / n, 2), "share": f"{100 * v / total:.0f}%"}
            for p, v in sorted(parts.items(), key=lambda kv: -kv[1])]
    rows.append({"part": "frame (profiled wall time)", "ms per frame": round(1000 * wall / n, 2), "share": ""})
    info = header()
    print(f"{info}\n{args.clip.name}: {n} frames after the first {args.skip}, {faces / max(n, 1):.2f} faces per frame, "
          f"AU engine threads {threads}; stages in one thread, under cProfile (which adds its own cost)\n")
    print(table(rows, ["part", "ms per frame", "share"]))
    save("frame_profile", {"header": info, "clip": args.clip.name, "frames": n, "rows": rows, "threads": threads})
    return 0


if __name__ == "__main__":
    sys.exit(main())
