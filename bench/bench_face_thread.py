"""What limits one face in steady state: each thread's busy time, the AU model's share, CPU used.

    python -m bench.bench_face_thread [--clip media/WolfgangLanger_Pexels.mp4] [--frames 240] [--rounds 3]

In a pipelined ``detect_video`` run (the default path), times the face thread inside the tracker
(and in it the Landmarker and the face detector) and the AU thread inside the AU model and pose
and gaze, per frame; then the frame rate with the AU model's output replayed instead of run (what
the rest costs alone); then the CPU time per frame of our process and of the peer (MediaPipe's
Landmarker with blendshapes in video mode, as in ``bench_faces``), best of ``--rounds`` each;
then, on Linux, our CPU time per frame by thread in one more run (from /proc/self/task, sampled
every 0.05 s; a thread that ends with the run loses its last 0.05 s at most): the AU thread (the
caller's), the face thread, MediaPipe's graph threads and its dispatcher threads, the decoder,
and the native pools (onnxruntime's, OpenCV's).
Writes out/bench/face_thread.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.common import MEDIA, header, save, table

ORDER = ("face thread: tracker", "  of it the Landmarker step", "  of it the face detector", "AU thread: AU model",
         "AU thread: pose and gaze")


def _timed(busy: dict, label: str, fn):
    def run(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            busy[label] += time.perf_counter() - t
    return run


def _rounds(fn, rounds: int) -> dict:
    """The best round of ``fn() -> frames``: frames per second and CPU milliseconds per frame."""
    best = None
    for _ in range(rounds):
        t, c = time.perf_counter(), os.times()
        n = fn()
        wall, c1 = time.perf_counter() - t, os.times()
        cpu = (c1.user - c.user) + (c1.system - c.system)
        row = {"fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n, "cpu_percent_of_a_core": 100 * cpu / wall}
        best = row if best is None or row["fps"] > best["fps"] else best
    return best


def _thread_group(name: str, python_names: dict, tid: str) -> str:
    py = python_names.get(tid)
    if py == "MainThread":
        return "AU thread (the caller's: AU model, pose and gaze, results)"
    if py is not None:
        if py.startswith("rtatl-face-thread"):
            return "face thread (tracker: crops, detector, our side of the Landmarker)"
        if py.startswith("rtatl-decode"):
            return "decoder (reading frames)"
        if py.startswith("ThreadPoolExecutor"):
            return "MediaPipe's dispatcher threads (graph set-up, public calls)"
        return f"other Python thread ({py})"
    if name == "drishti":
        return "MediaPipe's graph threads (the Landmarker's work)"
    if name.startswith("av:"):
        return "decoder (FFmpeg's threads)"
    return "native pools (onnxruntime's, OpenCV's)"


def cpu_by_thread(run) -> list[dict] | None:
    """CPU milliseconds per frame of each group of this process's threads during ``run() -> frames``
    (Linux); None elsewhere."""
    import threading

    task = Path("/proc/self/task")
    if not task.is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def snap() -> dict:
        out = {}
        for d in task.iterdir():
            try:
                stat = (d / "stat").read_text()
            except OSError:  # the thread ended
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[d.name] = (stat.split("(", 1)[1].rsplit(")", 1)[0], (int(fields[11]) + int(fields[12])) / tick)
        return out

    base, last, names, done = snap(), {}, {}, threading.Event()

    def sample():
        while not done.wait(0.05):
            last.update(snap())
            names.update({str(t.native_id): t.name for t in threading.enumerate()})

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    n = run()
    last.update(snap())
    done.set()
    sampler.join()
    groups: dict[str, float] = defaultdict(float)
    for tid, (name, cpu) in last.items():
        if names.get(tid) != "bench-sampler":
            groups[_thread_group(name, names, tid)] += cpu - base.get(tid, (name, 0.0))[1]
    return [{"threads": k, "cpu ms per frame": 1000 * v / n} for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
            if v > 0]


def _peer(clip: Path, frames: int):
    """``run() -> frames``: the peer (loaded once) on the clip, decoding included as ours is."""
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from rtatl_sdk import quiet, store
    from rtatl_sdk.stream.video import iter_frames

    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(store.resolve(store.FACE_LANDMARKER))),
                                        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
    with quiet.native_logs():
        lm = vision.FaceLandmarker.create_from_options(opts)
    ts = [0]

    def run() -> int:
        n = 0
        for fr in iter_frames(clip, max_frames=frames):
            ts[0] += 40
            lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(fr.image[:, :, ::-1])), ts[0])
            n += 1
        return n

    run()  # warm
    return run


def main(argv=None) -> int:
    from rtatl_sdk import AUDetector
    from rtatl_sdk.face import tracking

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=MEDIA / "WolfgangLanger_Pexels.mp4")
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    busy: dict[str, float] = defaultdict(float)
    call = tracking.FaceTracker.__call__
    tracking.FaceTracker.__call__ = lambda self, bgr: _timed(busy, "face thread: tracker", call)(self, bgr)
    try:
        with AUDetector() as det:
            run = lambda: sum(1 for _ in det.detect_video(args.clip, max_frames=args.frames))  # noqa: E731
            run()  # warm
            det.pipeline.landmarker.landmarks = _timed(busy, "  of it the Landmarker step", det.pipeline.landmarker.landmarks)
            det.pipeline.detector.detect = _timed(busy, "  of it the face detector", det.pipeline.detector.detect)
            det._outputs = _timed(busy, "AU thread: AU model", det._outputs)
            det._geometry = _timed(busy, "AU thread: pose and gaze", det._geometry)
            busy.clear()
            t = time.perf_counter()
            n = run()
            wall = time.perf_counter() - t
            parts = [{"part": k, "ms per frame": 1000 * busy[k] / n, "busy": f"{100 * busy[k] / wall:.0f}%"}
                     for k in ORDER]
            ours = _rounds(run, args.rounds)
            real, replay = det.engine.infer, {}

            def replayed(image, centres, names):  # the first answer for each batch size, given again
                if len(image) not in replay:
                    replay[len(image)] = real(image, centres, names)
                return replay[len(image)]

            det.engine.infer = replayed
            no_au = _rounds(run, args.rounds)
            det.engine.infer = real
            by_thread = cpu_by_thread(run)
    finally:
        tracking.FaceTracker.__call__ = call
    peer = _rounds(_peer(args.clip, args.frames), args.rounds)
    info = header()
    print(f"{info}\n{args.clip.name}, {n} frames, one pipelined run timed inside ({n / wall:.1f} fps):\n")
    print(table(parts, ["part", "ms per frame", "busy"]))
    rows = [{"run": "ours", **ours}, {"run": "ours, the AU model's output replayed", **no_au},
            {"run": "peer (MediaPipe alone)", **peer}]
    print("\n" + table(rows, ["run", "fps", "cpu_ms_per_frame", "cpu_percent_of_a_core"]))
    if by_thread:
        print("\nours, CPU by thread (one more run):\n")
        print(table(by_thread, ["threads", "cpu ms per frame"]))
    save("face_thread", {"header": info, "clip": args.clip.name, "frames": n, "parts": parts, "rows": rows,
                         "cpu_by_thread": by_thread})
    return 0


if __name__ == "__main__":
    sys.exit(main())
