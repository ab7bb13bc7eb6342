"""The AU engine's thread count in videos, interleaved: steady-state frames per second of
``detect_video`` on one face and on four, for each ``--threads`` setting in turn.

    python -m bench.bench_threads [--threads 1 2] [--rounds 3] [--frames 240] [--model v2]

Each round builds one detector per setting (the order alternates between rounds, so neither
setting always runs first) and runs both clips of ``bench_faces.py`` (``WolfgangLanger_Pexels.mp4``
and the four-face pan). Prints each setting's runs and their median. Writes out/bench/threads.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.bench_faces import four_face_clip, steady_ours
from bench.common import MEDIA, header, save, table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--model", default=None, help="AU model: a path or a bundled name (default: the default model)")
    args = ap.parse_args(argv)
    from rtatl_sdk import AUDetector

    info = header()
    print(info, f"\nmodel {args.model or 'default'}")
    clips = {1: MEDIA / "WolfgangLanger_Pexels.mp4",
             4: four_face_clip(Path(tempfile.mkdtemp(prefix="rtatl-bench-")) / "four.mp4", args.frames)}
    runs: dict[tuple[int, int], list[float]] = {}
    for r in range(args.rounds):
        for n in args.threads if r % 2 == 0 else args.threads[::-1]:
            with AUDetector(args.model, threads=n) as det:
                for faces, clip in clips.items():
                    runs.setdefault((n, faces), []).append(steady_ours(det, clip, args.frames))
    rows = [{"threads": n, "faces": faces, "median_fps": statistics.median(v), "runs": " ".join(f"{x:.1f}" for x in v)}
            for (n, faces), v in sorted(runs.items())]
    print(table(rows, ["threads", "faces", "median_fps", "runs"]))
    save("threads" + (f"_{Path(args.model).stem}" if args.model else ""),
         {"header": info, "model": args.model, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
