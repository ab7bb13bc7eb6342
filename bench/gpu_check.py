"""The checks to run the first time a GPU machine is available, in order, each printing its numbers.

    python -m bench.gpu_check [--out out/gpu] [--json out/bench/gpu_check.json] [--cache DIR] [--only CHECK ...]

1. environment: GPU, driver/CUDA, torch, onnxruntime providers, TensorRT and cuda-python versions;
2. the `gpu` tests (pytest -m gpu);
3. onnxruntime CUDA provider: parity with PyTorch with TF32 off and on, latency at batch 1/8/32;
4. TensorRT: engine build time (rtatl-export --trt), parity and latency through the SDK runner;
5. TensorRT provider: cold start (engine built) and cached start (engine cache reused);
6. AMP training: images per second and peak memory for 20 steps of the smoke graph on a synthetic
   BP4D cache (``--cache`` names one prepared elsewhere);
7. the paper's graph and batches: images per second and peak memory, mixed precision on and off;
8. resume across devices: a CPU checkpoint continued on the GPU, and back.

Without CUDA it says so and exits 2. Each check that fails prints why and the script goes on.
The numbers are the GPU rows of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
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
    env = {**os.environ, **({"RTATL_BP4D_CACHE": str(CACHE[0])} if CACHE else {})}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu"], cwd=REPO, capture_output=True,
                         text=True, env=env)
    lines = res.stdout.strip().splitlines()
    return {"exit": res.returncode, "summary": lines[-1:], "skipped": [x for x in lines if x.startswith("SKIPPED")],
            "failed": [x for x in lines if x.startswith(("FAILED", "ERROR"))]}


def cuda_provider(out: Path) -> dict:
    import onnxruntime as ort
    import torch

    from export import export_model
    from export.api import inference_model, random_inputs
    from rtatl_sdk.engines import OnnxEngine

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"skipped": "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"}
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


def _cache(out: Path) -> Path:
    """The BP4D-layout cache the training checks use: ``--cache`` where given (preparing one needs
    mediapipe and opencv-contrib, which a GPU image may lack), else one made here once."""
    if CACHE:
        return CACHE[0]
    from training.data.synthetic import main as synth
    from training.prep import prepare

    raw, cache = out / "bp4d_raw", out / "bp4d_cache"
    if not cache.is_dir():
        synth(["BP4D", str(raw), "--videos", str(MEDIA / "single_face.mp4")])
        prepare("BP4D", raw, cache, workers=2, progress=False)
    return cache


def _train(out: Path, name: str, config: str, steps: int, *overrides: str) -> dict:
    cache = _cache(out)
    res = subprocess.run([sys.executable, "-m", "training.train", "--config", config, f"data.cache={cache}",
                          f"data.unlabelled_cache={cache}", f"run.out={out / name}", "data.fold=null",
                          f"optim.steps={steps}", f"run.log_every={steps // 2}", "run.device=cuda", *overrides],
                         cwd=REPO, capture_output=True, text=True)
    log = [json.loads(x) for x in (out / name / "log.jsonl").read_text().splitlines()] if res.returncode == 0 else []
    steady = None
    if len(log) >= 2:  # images per second is an average from the start: the second half's own rate
        (s1, r1), (s2, r2) = [(r["step"], r["images_per_second"]) for r in log[-2:]]
        steady = round((s2 - s1) / max(1e-9, s2 / r2 - s1 / r1), 1)  # per-image units cancel
    return {"exit": res.returncode, "images_per_second": log[-1]["images_per_second"] if log else None,
            "second_half_images_per_second": steady,
            "gpu_peak_mib": log[-1].get("gpu_peak_mib") if log else None,
            "stderr_tail": res.stderr[-500:] if res.returncode else ""}


def amp_training(out: Path) -> dict:
    """The smoke graph, 20 steps of 16 labelled images, mixed precision."""
    return _train(out, "amp", "training/configs/smoke.yaml", 20, "optim.batch_size=16", "run.amp=true")


def paper_training(out: Path) -> dict:
    """The paper's graph and batches (bp4d.yaml: 32 labelled + 32 unlabelled images, both auxiliary
    tasks), the cache's frames standing in as the unlabelled stream; images per second counts the
    labelled images. Mixed precision on and off, 200 steps each."""
    rows = {}
    for amp in ("true", "false"):
        rows[f"amp={amp}"] = _train(out, f"paper_amp_{amp}", "training/configs/bp4d.yaml", 200, f"run.amp={amp}",
                                    "run.workers=8", "run.ckpt_every=1000")
    return rows


def resume_across_devices(out: Path) -> dict:
    cache = _cache(out)
    common = [sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml", f"data.cache={cache}",
              f"data.unlabelled_cache={cache}", f"run.out={out / 'cross'}", "data.fold=null", "optim.batch_size=4"]
    codes = {}
    for device, steps in (("cpu", 2), ("cuda", 4), ("cpu", 6)):
        res = subprocess.run(common + [f"run.device={device}", f"optim.steps={steps}"], cwd=REPO, capture_output=True, text=True)
        codes[f"{device} to step {steps}"] = res.returncode if res.returncode == 0 else res.stderr[-300:]
    return codes


CHECKS = [environment, gpu_tests, cuda_provider, tensorrt_engine, tensorrt_provider, amp_training, paper_training,
          resume_across_devices]
CACHE: list[Path] = []  # --cache, when given


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/gpu"))
    ap.add_argument("--json", type=Path, default=Path("out/bench/gpu_check.json"))
    ap.add_argument("--cache", type=Path, help="a prepared BP4D-layout cache for the training checks (rtatl-synth + "
                    "rtatl-prep); without it one is prepared, which needs mediapipe and opencv-contrib")
    ap.add_argument("--only", nargs="+", choices=[c.__name__ for c in CHECKS], help="run these checks alone")
    args = ap.parse_args(argv)
    if args.cache is not None:
        if not (args.cache / "manifest.json").is_file():
            print(f"gpu_check: --cache {args.cache}: not a prepared cache (no manifest.json)", file=sys.stderr)
            return 2
        CACHE[:] = [args.cache.resolve()]
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for check in (c for c in CHECKS if not args.only or c.__name__ in args.only):
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
