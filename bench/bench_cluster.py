"""Archive throughput: ``rtatl-detect`` in one process against ``rtatl-detect --cluster`` (a local
Ray cluster) with 1 and 2 workers, on the same inputs (the media clips and images), each as a
whole command (start-up, model loading and, for the cluster, Ray's start included).

    python -m bench.bench_cluster [--workers 1 2]

Prints frames per second (all frames of all inputs / wall seconds) and writes out/bench/cluster.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MEDIA, header, save, table

INPUTS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "noface_face.mov", "no_face.mp4",
          "single_face.jpg", "multi_face.jpg", "free-mountain-vector-01.jpg"]


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode not in (0, 1):
        raise SystemExit(f"{cmd}: exit {res.returncode}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        for name in INPUTS:
            shutil.copy(MEDIA / name, archive / name)
        cli = [sys.executable, "-m", "rtatl_sdk.apps.cli", str(archive), "--quiet"]
        dt = timed(cli + ["--out", str(Path(tmp) / "single.csv")])
        frames = len({tuple(line.split(",")[:2]) for line in (Path(tmp) / "single.csv").read_text().splitlines()[1:]})
        rows.append({"run": "rtatl-detect, one process", "seconds": dt, "frames_per_second": frames / dt})
        for w in args.workers:
            out = Path(tmp) / f"out{w}"
            dt = timed(cli + ["--cluster", "--out-dir", str(out), "--workers", str(w)])
            entries = json.loads((out / "manifest.json").read_text())["inputs"]
            n = sum(e.get("frames", 0) for e in entries.values())
            assert n == frames, (n, frames)
            rows.append({"run": f"rtatl-detect --cluster (local Ray), {w} worker(s)", "seconds": dt, "frames_per_second": n / dt})
    head = {**header(), "inputs": INPUTS, "frames": frames}
    print("# archive throughput\n")
    print("\n".join(f"- {k}: {v}" for k, v in head.items()))
    print()
    print(table(rows, ["run", "seconds", "frames_per_second"]))
    save("cluster", {"header": head, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
