"""Per-stage latency: decode, detector, landmarker, alignment, AU model (fp32/int8 x batch
1/8/32, per face), writer, preprocessing cost per frame, training images per second.

    python -m bench.bench_stages [--model rtatl_sdk/models/model.onnx] [--threads 1] [--repeats 20]

Prints tables (median and p10-p90 over repeats) and writes out/bench/stages.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.common import MEDIA, header, save, table, timeit


def main(argv=None) -> int:
    import cv2
    import onnxruntime as ort

    from rtatl_sdk import load_image
    from rtatl_sdk.contract import geometry
    from rtatl_sdk.contract.preprocess import model_inputs
    from rtatl_sdk.face import FacePipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("rtatl_sdk/models/model.onnx"))
    ap.add_argument("--int8", type=Path, default=None, help="default: model.int8.onnx beside --model")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime/OpenCV threads (1 = per-core numbers)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    head = header()
    head["threads"] = args.threads
    rows = []
    jpg = (MEDIA / "single_face.jpg").read_bytes()
    rows.append({"stage": "decode JPEG 572x562", **timeit(lambda: load_image(jpg), args.repeats)})
    cap = cv2.VideoCapture(str(MEDIA / "WolfgangLanger_Pexels.mp4"))
    rows.append({"stage": "decode video frame 640x360", **timeit(lambda: cap.read(), args.repeats)})
    _, frame = cap.read()
    pipe = FacePipeline(blendshapes=False)
    pipe.detector = type(pipe.detector)(threads=args.threads)
    rows.append({"stage": "detector (RetinaFace) 640x360", **timeit(lambda: pipe.detector.detect(frame), args.repeats)})
    box = pipe.detector.detect(frame)[0]
    cx, cy, side = box.square(pipe.landmarker.crop_factor)
    rows.append({"stage": "landmarker per face (478 pts)", **timeit(lambda: pipe.landmarker.landmarks(frame, cx, cy, side), args.repeats)})
    face = pipe.process(frame, [box])[0]
    rows.append({"stage": "align 68 pts -> 200x200", **timeit(lambda: geometry.align_face(frame, face.landmarks), args.repeats)})
    from rtatl_sdk.contract.au import AU_SETS

    aus = AU_SETS["BP4D"]
    models = {"fp32": args.model, "int8": args.int8 or args.model.with_name("model.int8.onnx")}
    for name, path in models.items():
        if not Path(path).is_file():
            print(f"({name} model {path} not found; skipped)", file=sys.stderr)
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for b in (1, 8, 32):
            image, centres = model_inputs([face.crop()] * b, [face.crop_landmarks()] * b, aus)
            t = timeit(lambda s=sess, x=image, c=centres: s.run(None, {"image": x, "centres": c}), max(5, args.repeats // (1 + b // 8)))
            rows.append({"stage": f"AU model {name} batch {b} (per face)", "median_ms": t["median_ms"] / b,
                         "p10_ms": t["p10_ms"] / b, "p90_ms": t["p90_ms"] / b, "repeats": t["repeats"]})
    from rtatl_sdk.io.rows import face_row
    from rtatl_sdk.io.writers import RowWriter

    fake = _fake_result(face, aus)
    buf = Path("out/bench/_writer.csv")
    w = RowWriter(buf, [f"AU{a:02d}" for a in aus])
    rows.append({"stage": "CSV writer (1 row, flushed)", **timeit(lambda: w.write_rows([face_row("x", 0, 0.0, fake)]), args.repeats)})
    w.close()
    buf.unlink()
    # preprocessing (rtatl-prep) cost per frame: pipeline + TV-L1 t -> t+3
    try:
        from training.flow import FlowParams, tvl1_flow

        _, later = cap.read()
        nxt = geometry.warp_to_canvas(later, face.aligned.matrix)
        for scale in (1.0, 0.5):
            p = FlowParams(scale=scale)
            rows.append({"stage": f"prep: TV-L1 200x200 pair, scale {scale}", **timeit(lambda p=p: tvl1_flow(face.aligned.image, nxt, p), 3, 1)})
    except ImportError:
        pass
    cols = ["stage", "median_ms", "p10_ms", "p90_ms", "repeats"]
    print("# per-stage latency\n")
    print("\n".join(f"- {k}: {v}" for k, v in head.items()))
    print()
    print(table(rows, cols))
    train = None if args.skip_train else _train_speed()
    if train:
        print(f"\ntraining (RTATL, CPU, batch {train['batch']}): {train['images_per_second']:.2f} images/s")
    save("stages", {"header": head, "rows": rows, "training": train})
    pipe.close()
    return 0


def _fake_result(face, aus):
    from rtatl_sdk.results import AUResult, Box, FaceAUs

    return FaceAUs(index=0, box=Box(x=1, y=2, w=3, h=4, score=1), landmarks=face.landmarks,
                   aus={f"AU{a:02d}": AUResult(probability=0.5, present=True, threshold=0.5) for a in aus})


def _train_speed(batch: int = 8, steps: int = 4) -> dict | None:
    try:
        import time

        import torch

        from rtatl_sdk.contract.au import AU_SETS
        from training.config import ModelConfig
        from training.model import RTATL
    except ImportError:
        return None
    torch.manual_seed(0)
    m = RTATL(ModelConfig(), AU_SETS["BP4D"], init=False)
    opt = torch.optim.Adam(m.generator_parameters(), 3e-4)
    b = {"image": torch.randn(batch, 3, 192, 192), "centres": torch.rand(batch, 24, 2) * 120 + 36,
         "labels": torch.randint(0, 2, (batch, 12)).float(), "labelled": torch.ones(batch, dtype=torch.bool),
         "flow": torch.randn(batch, 2, 192, 192), "has_flow": torch.ones(batch, dtype=torch.bool)}
    t = None
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        out = m(b, mode="g")
        opt.zero_grad()
        out.total.backward()
        opt.step()
        m(out, mode="d").total.backward()
    dt = time.perf_counter() - t
    return {"batch": batch, "steps": steps, "images_per_second": batch * steps / dt, "threads": torch.get_num_threads()}


if __name__ == "__main__":
    sys.exit(main())
