"""Video end to end, side by side with the peer in the same run: frames per second of
``AUDetector.detect_video`` for per-frame detection, tracking and tracking with keyframe reuse,
for each AU engine and thread count, against MediaPipe's Face Landmarker with blendshapes in
video mode on the same frames (the peer). Both sides read the file through the same decoder
and are timed from the first frame read to the last result (models loaded and warmed first).
Runs are interleaved (peer, ours, peer, ...) so that a slower minute hits both.

    python -m bench.bench_video [--video media/WolfgangLanger_Pexels.mp4] [--repeats 2]
        [--engines rtatl_sdk/models/model.int8.onnx openvino:rtatl_sdk/models/model.int8.onnx ...]
        [--threads 0 1] [--detect-every 5 10 20]

Also printed, per configuration: AU decisions equal to per-frame detection without reuse with
the same engine (share of face x AU decisions, and share of faces with all decisions equal),
detector runs and the share of AU inferences answered from a keyframe. Then faces found with
tracking against per-frame detection on noface_face.mov and on a pan over multi_face.jpg.
Writes out/bench/video.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import MEDIA, header, save, table
from rtatl_sdk.options import DETECT_EVERY

MODELS = Path(__file__).resolve().parents[1] / "rtatl_sdk" / "models"
MODES = {  # name -> (detect_every, reuse); None: each of --detect-every
    "per-frame detection": (1, False),
    "tracking": (None, False),
    "tracking + reuse": (None, True),
}


def peer_run(video: Path, max_frames: int | None) -> tuple[int, float]:
    """MediaPipe Face Landmarker, video mode, blendshapes on, full frames: (frames, seconds)."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from rtatl_sdk import quiet, store
    from rtatl_sdk.stream.video import iter_frames

    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(store.resolve(store.FACE_LANDMARKER))),
                                        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_face_blendshapes=True)
    with quiet.native_logs():
        lm = vision.FaceLandmarker.create_from_options(opts)
        lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)), 0)
    t, n = time.perf_counter(), 0
    for fr in iter_frames(video, max_frames=max_frames):
        rgb = np.ascontiguousarray(fr.image[:, :, ::-1])
        lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), 1 + int(fr.timestamp * 1000))
        n += 1
    dt = time.perf_counter() - t
    lm.close()
    return n, dt


def our_run(det, video: Path, max_frames: int | None, every: int, reuse: bool):
    from rtatl_sdk.options import ReuseConfig

    det.reuse = ReuseConfig() if reuse else None
    t = time.perf_counter()
    frames = list(det.detect_video(video, max_frames=max_frames, detect_every=every))
    dt = time.perf_counter() - t
    return frames, dt, dict(det.last_stream)


def decisions(frames) -> list[np.ndarray | None]:
    """The largest face's AU decisions per frame (None without a face)."""
    out = []
    for fr in frames:
        if not fr.faces:
            out.append(None)
            continue
        f = max(fr.faces, key=lambda x: x.box.w * x.box.h)
        out.append(np.array([bool(r.present) for r in f.aus.values()]))
    return out


def agreement(a, b) -> tuple[float, float]:
    """(share of equal AU decisions, share of faces with all decisions equal) over frames where both have a face."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return float("nan"), float("nan")
    eq = np.array([x == y for x, y in pairs])
    return float(eq.mean()), float(eq.all(1).mean())


def _spinning(det, threads: int) -> None:
    """The detector's onnxruntime sessions (AU model, face detector) rebuilt with spinning threads."""
    import onnxruntime as ort

    def session(path, th):
        o = ort.SessionOptions()
        o.log_severity_level = 3
        if th:
            o.intra_op_num_threads = th
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    from rtatl_sdk import store

    det.engine.session = session(det.model_path, threads)
    det.pipeline.detector._session = session(store.resolve(store.FACE_DETECTOR), 0)


def recall(det) -> list[dict]:
    """Faces per frame with tracking (the detector's defaults) against per-frame detection, on
    noface_face.mov (a face appears part-way) and a pan over multi_face.jpg (five people)."""
    import tempfile

    from tests.helpers import pan_clip

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in (MEDIA / "noface_face.mov", pan_clip(MEDIA / "multi_face.jpg", Path(tmp) / "pan.mp4")):
            a = [len(f.faces) for f in det.detect_video(clip, detect_every=1)]
            frames = list(det.detect_video(clip))
            b, st = [len(f.faces) for f in frames], det.last_stream
            rows.append({"clip": clip.name, "frames": len(a), "faces (per-frame detection)": sum(a), "faces (tracking)": sum(b),
                         "frames with equal counts": round(sum(x == y for x, y in zip(a, b)) / len(a), 4),
                         "first frame with all faces (detection / tracking)": f"{a.index(max(a))} / {b.index(max(b))}",
                         "detector runs (tracking)": st["detections"],
                         "track ids": len({f.track_id for fr in frames for f in fr.faces})})
    return rows


def main(argv=None) -> int:
    from rtatl_sdk import AUDetector

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=MEDIA / "WolfgangLanger_Pexels.mp4")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--engines", nargs="+", default=[str(MODELS / "model.int8.onnx"), str(MODELS / "model.onnx")],
                    help="model files, each optionally as BACKEND:PATH (e.g. openvino:model.int8.onnx)")
    ap.add_argument("--no-recall", action="store_true", help="skip the face-recall table")
    ap.add_argument("--spin", action="store_true", help="also measure onnxruntime sessions that spin between "
                    "operators (onnxruntime's default; the SDK's sessions sleep)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0], help="AU engine threads to measure (0: one per core)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--detect-every", type=int, nargs="+", default=[DETECT_EVERY], help="detector periods to measure")
    args = ap.parse_args(argv)
    head = header()
    peer_fps, ours = [], {}
    dets = {}
    for spec in args.engines:
        backend, _, path = spec.rpartition(":")
        for th in args.threads:
            for spin in (False, True) if args.spin else (False,):
                det = AUDetector(path, threads=th, backend=backend or "onnxruntime")
                if spin:
                    _spinning(det, th)
                list(det.detect_video(args.video, max_frames=5))  # warm-up
                dets[(f"{backend or 'onnxruntime'} {Path(path).name}{', spinning' if spin else ''}", th)] = det
    runs = []  # (label, detect_every, reuse)
    for mode in args.modes:
        every, reuse = MODES[mode]
        runs += [(mode, every, reuse)] if every else [(f"{mode}, K={k}", k, reuse) for k in args.detect_every]
    reference = {}
    for _ in range(args.repeats):
        n, dt = peer_run(args.video, args.max_frames)
        peer_fps.append(n / dt)
        for (eng, th), det in dets.items():
            for mode, every, reuse in runs:
                frames, dt, stats = our_run(det, args.video, args.max_frames, every, reuse)
                row = ours.setdefault((eng, th, mode), {"fps": [], "stats": stats})
                row["fps"].append(len(frames) / dt)
                row["faces"] = sum(len(f.faces) for f in frames)
                row["decisions"] = decisions(frames)
                if mode == "per-frame detection":
                    reference[eng] = row["decisions"]
    peer = float(np.median(peer_fps))
    rows = [{"run": "peer: MediaPipe landmarker + blendshapes, video mode", "fps": peer, "ratio": 1.0}]
    for (eng, th, mode), r in ours.items():
        fps = float(np.median(r["fps"]))
        st = r["stats"]
        agree = agreement(r["decisions"], reference[eng]) if eng in reference else (float("nan"),) * 2
        rows.append({"run": f"ours: {eng}, {th} thread(s), {mode}", "fps": fps, "ratio": fps / peer,
                     "faces": r["faces"], "detector runs": st.get("detections"),
                     "reused": round(st["reused"] / max(1, st["faces"]), 3) if "reused" in st else "",
                     "decisions equal": f"{agree[0]:.4f}", "faces all equal": f"{agree[1]:.4f}"})
    print("# video end to end\n")
    print("\n".join(f"- {k}: {v}" for k, v in head.items()))
    print(f"- video: {args.video.name}, repeats: {args.repeats} (median fps), peer runs: {[round(x, 1) for x in peer_fps]}\n")
    print(table(rows, ["run", "fps", "ratio", "faces", "detector runs", "reused", "decisions equal", "faces all equal"]))
    recall_rows = [] if args.no_recall else recall(next(iter(dets.values())))
    if recall_rows:
        print("\n## faces found: tracking (defaults) against per-frame detection\n")
        print(table(recall_rows, list(recall_rows[0])))
    save("video", {"header": head, "rows": rows, "peer_fps": peer_fps, "recall": recall_rows})
    for det in dets.values():
        det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
