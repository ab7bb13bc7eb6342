"""The checks to run the first time a GPU machine is available, in order, each printing its numbers.

    python -m bench.gpu_check [--out out/gpu] [--json out/bench/gpu_check.json]

1. environment: GPU, driver/CUDA, torch, onnxruntime providers, TensorRT and cuda-python versions;
2. the `gpu` tests (pytest -m gpu);
3. onnxruntime CUDA provider: parity with PyTorch with TF32 off and on, latency at batch 1/8/32;
4. TensorRT: engine build time (rtatl-export --trt), parity and latency through the SDK runner;
5. TensorRT provider: cold start (engine built) and cached start (engine cache reused);
6. AMP training: images per second and peak memory for 20 steps on a synthetic BP4D cache;
7. resume across devices: a CPU checkpoint continued on the GPU, and back.

Without CUDA it says so and exits 2. Each check that fails prints why and the script goes on.
The numbers are the GPU rows of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench.common import MEDIA, header

REPO = Path(__file__).resolve().parents[1]



def _ckpt(out: Path) -> Path:
    from rtatl_sdk.contract.au import AU_SETS
    from training.checkpoint import write_initial_checkpoint
    from training.config import TrainConfig

    return write_initial_checkpoint(out / "init.ckpt", TrainConfig.model_validate({"data": {"cache": "-"}}), AU_SETS["BP4D"])


def _latency(run, image, centres, repeats: int = 20) -> float:
    run(image, centres)
    t = time.perf_counter()
    for _ in range(repeats):
        run(image, centres)
    return (time.perf_counter() - t) / repeats * 1000


def environment(out: Path) -> dict:
    import onnxruntime as ort
    import torch

    info = {**header(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0), "ort_providers": ort.get_available_providers()}
    for mod in ("tensorrt", "cuda.bindings"):
        try:
            info[mod] = getattr(__import__(mod, fromlist=["x"]), "__version__", "present")
        except ImportError as exc:
            info[mod] = f"missing ({exc})"
    return info


def gpu_tests(out: Path) -> dict:
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu"], cwd=REPO, capture_output=True, text=True)
    return {"exit": res.returncode, "summary": res.stdout.strip().splitlines()[-1:]}


def cuda_provider(out: Path) -> dict:
    import torch

    from export import export_model
    from export.api import inference_model, random_inputs
    from rtatl_sdk.engines import OnnxEngine

    ckpt = _ckpt(out)
    export_model(ckpt, out / "onnx")
    ref_model, _ = inference_model(ckpt)
    image, centres = random_inputs(8, 12, seed=3)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(image), torch.from_numpy(centres)).numpy()
    rows = {}
    for tf32 in (0, 1):
        eng = OnnxEngine(out / "onnx" / "model.onnx", [("CUDAExecutionProvider", {"use_tf32": tf32}), "CPUExecutionProvider"])
        rows[f"tf32={tf32}"] = {"providers": eng.providers, "max_abs": float(np.abs(eng.run(image, centres) - ref).max()),
                                **{f"ms_batch{b}": round(_latency(eng.run, *random_inputs(b, 12)), 2) for b in (1, 8, 32)}}
    return rows


def tensorrt_engine(out: Path) -> dict:
    from export import export_model
    from export.api import random_inputs
    from rtatl_sdk.engines import TensorRTEngine

    t = time.perf_counter()
    reps = export_model(_ckpt(out), out / "trt", fp16=True, trt=True, faces=MEDIA / "multi_face.jpg")
    build = time.perf_counter() - t
    eng = TensorRTEngine(out / "trt" / "model.engine")
    rep = next(r for r in reps if r.precision == "tensorrt-fp16")
    lat = {f"ms_batch{b}": round(_latency(eng.run, *random_inputs(b, 12)), 2) for b in (1, 8, 32)}
    eng.close()
    return {"export_with_engine_s": round(build, 1), "passed": rep.passed, "checks": rep.checks, **lat}


def tensorrt_provider(out: Path) -> dict:
    from rtatl_sdk.engines import OnnxEngine

    rows = {}
    for start in ("cold", "cached"):
        t = time.perf_counter()
        eng = OnnxEngine(out / "onnx" / "model.onnx", ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
        rows[start] = {"seconds": round(time.perf_counter() - t, 2), "providers": eng.providers}
    return rows


def amp_training(out: Path) -> dict:
    import torch

    from training.data.synthetic import main as synth
    from training.prep import prepare

    raw, cache = out / "bp4d_raw", out / "bp4d_cache"
    synth(["BP4D", str(raw), "--videos", str(MEDIA / "single_face.mp4")])
    prepare("BP4D", raw, cache, workers=2, progress=False)
    torch.cuda.reset_peak_memory_stats()
    res = subprocess.run([sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml",
                          f"data.cache={cache}", f"run.out={out / 'amp'}", "data.fold=null", "optim.steps=20",
                          "optim.batch_size=16", "run.device=cuda", "run.amp=true", "run.log_every=20"],
                         cwd=REPO, capture_output=True, text=True)
    log = [json.loads(x) for x in (out / "amp" / "log.jsonl").read_text().splitlines()] if res.returncode == 0 else []
    return {"exit": res.returncode, "images_per_second": log[-1]["images_per_second"] if log else None,
            "stderr_tail": res.stderr[-500:] if res.returncode else ""}


def resume_across_devices(out: Path) -> dict:
    cache = out / "bp4d_cache"
    common = [sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml", f"data.cache={cache}",
              f"run.out={out / 'cross'}", "data.fold=null", "optim.batch_size=4"]
    codes = {}
    for device, steps in (("cpu", 2), ("cuda", 4), ("cpu", 6)):
        res = subprocess.run(common + [f"run.device={device}", f"optim.steps={steps}"], cwd=REPO, capture_output=True, text=True)
        codes[f"{device} to step {steps}"] = res.returncode if res.returncode == 0 else res.stderr[-300:]
    return codes


CHECKS = [environment, gpu_tests, cuda_provider, tensorrt_engine, tensorrt_provider, amp_training, resume_across_devices]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/gpu"))
    ap.add_argument("--json", type=Path, default=Path("out/bench/gpu_check.json"))
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for check in CHECKS:
        t = time.perf_counter()
        try:
            results[check.__name__] = check(args.out)
        except Exception as exc:  # a failing check is a result too; the others still run
            results[check.__name__] = {"failed": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-800:]}
        print(f"## {check.__name__} ({time.perf_counter() - t:.1f} s)\n{json.dumps(results[check.__name__], indent=1, default=str)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
