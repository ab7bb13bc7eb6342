"""The AU model's CPU engines side by side: onnxruntime INT8 variants (per-channel or per-tensor
weights, QDQ or QOperator, reduce_range, which ops are quantized, graph optimisation level) and
OpenVINO (when installed: ``pip install 'rtatl[openvino]'``), each against the fp32 file on
onnxruntime. Per engine: milliseconds per face at batch 1 on 1 and 2 threads (median of
rounds of ``--repeats``, interleaved), and the share of AU decisions equal to fp32's on real faces that calibration
never saw (WolfgangLanger_Pexels.mp4 every 4th frame, calibration on single_face.mp4 and
multi_face.jpg).

    python -m bench.bench_au_engines [--model rtatl_sdk/models/model.onnx] [--repeats 20]

Needs the training extras (onnx) to build the INT8 variants. Prints a table and writes
out/bench/au_engines.json; the variant files stay in out/bench/engines/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import MEDIA, header, save, table, timeit

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> quantize_static options beyond calibration
    "qdq per-channel reduce_range (shipped recipe)": dict(fmt="QDQ", per_channel=True, reduce_range=True, ops="conv"),
    "qdq per-tensor reduce_range": dict(fmt="QDQ", per_channel=False, reduce_range=True, ops="conv"),
    "qoperator per-channel reduce_range": dict(fmt="QOperator", per_channel=True, reduce_range=True, ops="conv"),
    "qdq per-channel full range": dict(fmt="QDQ", per_channel=True, reduce_range=False, ops="conv"),
    "qdq per-channel reduce_range, +Add/Mul/pool": dict(fmt="QDQ", per_channel=True, reduce_range=True, ops="wide"),
}


def build_variant(src: Path, dst: Path, opts: dict, image: np.ndarray, centres: np.ndarray) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export.api import roi_path_nodes

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({"image": image[i:i + 1], "centres": centres[i:i + 1]} for i in range(len(image)))

        def get_next(self):
            return next(self.items, None)

    ops = ["Conv", "MatMul", "Gemm"] + (["Add", "Mul", "GlobalAveragePool", "MaxPool", "Concat"] if opts["ops"] == "wide" else [])
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=getattr(QuantFormat, opts["fmt"]),
                        per_channel=opts["per_channel"], reduce_range=opts["reduce_range"],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                        nodes_to_exclude=roi_path_nodes(onnx.load(str(pre))))


def ort_runner(path: Path, threads: int, level: str = "ORT_ENABLE_ALL"):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    return lambda x, c: s.run(["logits"], {"image": x, "centres": c})[0]


def openvino_runner(path: Path, threads: int):
    from rtatl_sdk.engines import OpenVinoEngine

    eng = OpenVinoEngine(path, threads=threads)
    return eng.run


def faces(path: Path, aus, stride: int, n: int):
    from export.faces import collect_faces

    return collect_faces(path, aus, max_faces=n, video_stride=stride)


def main(argv=None) -> int:
    from rtatl_sdk.engines import OnnxEngine
    from rtatl_sdk.errors import RTATLError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "rtatl_sdk" / "models" / "model.onnx")
    ap.add_argument("--repeats", type=int, default=5, help="runs per engine per round")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds (the median over rounds is reported)")
    ap.add_argument("--out", type=Path, default=Path("out/bench/engines"))
    args = ap.parse_args(argv)
    card = OnnxEngine(args.model, ["CPUExecutionProvider"]).card
    aus, thr = card.au_numbers, np.asarray(card.thresholds)
    calib_i, calib_c = map(np.concatenate, zip(faces(MEDIA / "single_face.mp4", aus, 6, 12), faces(MEDIA / "multi_face.jpg", aus, 1, 5)))
    eval_i, eval_c = faces(MEDIA / "WolfgangLanger_Pexels.mp4", aus, 4, 200)
    args.out.mkdir(parents=True, exist_ok=True)
    files = {"fp32": args.model}
    shipped = args.model.with_name("model.int8.onnx")
    if shipped.is_file():
        files["shipped int8 file"] = shipped
    for name, opts in VARIANTS.items():
        dst = args.out / (name.split(" (")[0].replace(" ", "_").replace(",", "").replace("/", "-").replace("+", "") + ".int8.onnx")
        if not dst.is_file():
            build_variant(args.model, dst, opts, calib_i, calib_c)
        files[name] = dst
    ref = ort_runner(args.model, 2)(eval_i, eval_c)
    engines = []
    for name, path in files.items():
        engines.append((f"onnxruntime: {name}", lambda th, p=path: ort_runner(p, th)))
        if name == "fp32":
            engines.append(("onnxruntime: fp32, basic graph optimisation", lambda th, p=path: ort_runner(p, th, "ORT_ENABLE_BASIC")))
    try:
        import openvino  # noqa: F401

        engines += [(f"openvino: {name}", lambda th, p=path: openvino_runner(p, th)) for name, path in files.items()]
    except ImportError:
        print("(openvino not installed: pip install 'rtatl[openvino]'; its rows are left out)", file=sys.stderr)
    runners, rows = {}, []
    for name, make in engines:
        for th in (1, 2):
            try:
                runners[(name, th)] = make(th)
            except RTATLError as exc:  # e.g. OpenVINO cannot read QOperator files
                print(f"({name}: {exc})", file=sys.stderr)
    x1, c1 = eval_i[:1], eval_c[:1]
    times: dict = {k: [] for k in runners}
    for _ in range(args.rounds):  # interleaved: a slow minute of the shared machine hits every engine
        for key, run in runners.items():
            times[key].append(timeit(lambda r=run: r(x1, c1), args.repeats, 1)["median_ms"])
    for name, _ in engines:
        if (name, 1) not in runners:
            rows.append({"engine": name, "ms/face 1 thread(s)": "cannot run"})
            continue
        row = {"engine": name, **{f"ms/face {th} thread(s)": float(np.median(times[(name, th)])) for th in (1, 2)}}
        run = runners[(name, 2)]
        out = np.concatenate([run(eval_i[i:i + 8], eval_c[i:i + 8]) for i in range(0, len(eval_i), 8)])
        prob, prob_ref = 1 / (1 + np.exp(-out)), 1 / (1 + np.exp(-ref))
        row["decisions equal to fp32"] = f"{((prob >= thr) == (prob_ref >= thr)).mean():.4f}"
        row["max |dp|"] = f"{np.abs(prob - prob_ref).max():.3f}"
        rows.append(row)
    head = header()
    head["eval faces"] = len(eval_i)
    head["calibration faces"] = len(calib_i)
    cols = ["engine", "ms/face 1 thread(s)", "ms/face 2 thread(s)", "decisions equal to fp32", "max |dp|"]
    print("# AU model engines on CPU\n")
    print("\n".join(f"- {k}: {v}" for k, v in head.items()))
    print()
    print(table(rows, cols))
    save("au_engines", {"header": head, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
