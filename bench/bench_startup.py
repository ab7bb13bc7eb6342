"""Start-up: a whole process from launch to its first face's result, ours against the peer.

    python -m bench.bench_startup [--repeats 5]

Interleaved fresh processes on one still (``single_face.jpg``), wall clock from launch to exit:

- python: an interpreter that does nothing (the floor);
- peer: ``import mediapipe``, MediaPipe's Face Landmarker with blendshapes in image mode, one
  detection (MediaPipe used as its documentation shows);
- ours: ``rtatl-detect single_face.jpg --out x.csv`` (the default model, AUs, pose, gaze, CSV);
- ours, import: ``import rtatl_sdk`` and ``AUDetector()`` built, no image.

Also where our start goes inside one process (imports, loading the models, the first face).
Writes out/bench/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_faces import whole_process
from bench.common import MEDIA, header, save, table

REPO = Path(__file__).resolve().parents[1]
PEER = """
import sys, numpy as np, cv2, mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions
lm = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
    base_options=BaseOptions(model_asset_path=sys.argv[2]), output_face_blendshapes=True))
rgb = np.ascontiguousarray(cv2.imread(sys.argv[1])[:, :, ::-1])
print(len(lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).face_landmarks))
"""
BUILD = "from rtatl_sdk import AUDetector\nAUDetector().close()"
STAGES = """
import json, time
t0 = time.perf_counter()
import rtatl_sdk
from rtatl_sdk import AUDetector, load_image
t1 = time.perf_counter()
det = AUDetector()
t2 = time.perf_counter()
faces = det.detect(load_image(__import__("sys").argv[1]))
t3 = time.perf_counter()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "load_models_ms": 1000 * (t2 - t1), "first_face_ms": 1000 * (t3 - t2),
                  "faces": len(faces)}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from rtatl_sdk import store

    info = header()
    print(info)
    still = MEDIA / "single_face.jpg"
    out = Path(tempfile.mkdtemp(prefix="rtatl-bench-")) / "x.csv"
    py = sys.executable
    cmds = {"python": [py, "-c", "pass"],
            "peer: MediaPipe Face Landmarker, one still": [py, "-c", PEER, str(still), str(store.resolve(store.FACE_LANDMARKER))],
            "ours: rtatl-detect, one still": [py, "-m", "rtatl_sdk.apps.cli", str(still), "--out", str(out), "--quiet"],
            "ours: import + AUDetector()": [py, "-c", BUILD]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeats):  # interleaved
        for k, cmd in cmds.items():
            times[k].append(whole_process(cmd))
    rows = [{"process": k, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for k, v in times.items()]
    peer = statistics.median(times["peer: MediaPipe Face Landmarker, one still"])
    for r in rows:
        r["vs_peer"] = r["median_s"] / peer
    print(table(rows, ["process", "median_s", "min_s", "max_s", "vs_peer"]))
    stages = []
    for _ in range(args.repeats):
        res = subprocess.run([py, "-c", STAGES, str(still)], check=True, capture_output=True, text=True, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        stages.append(json.loads(res.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(s[k] for s in stages) for k in ("import_ms", "load_models_ms", "first_face_ms")}
    print("\ninside our process (median of", args.repeats, "):")
    print(table([med], list(med)))
    save("startup", {"header": info, "rows": rows, "stages": med, "repeats": args.repeats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
