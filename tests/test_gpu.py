"""The GPU checks of bench/gpu_check.py as tests (marker ``gpu``: skipped, with the reason, where
there is no CUDA GPU; ``pytest -m gpu`` runs only these). Each asserts the outcome the bench
script prints: parity within tolerance, an engine that builds and runs, batches beyond the
profile, a mixed-precision training step, a checkpoint that moves between devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    pytest.importorskip("torch")
    from rtatl_sdk.contract.au import AU_SETS
    from training.checkpoint import write_initial_checkpoint
    from training.config import TrainConfig

    d = tmp_path_factory.mktemp("gpu")
    return write_initial_checkpoint(d / "init.ckpt", TrainConfig.model_validate({"data": {"cache": "-"}}), AU_SETS["BP4D"])


@pytest.fixture(scope="module")
def onnx_fp32(ckpt, tmp_path_factory):
    from export import export_model

    out = tmp_path_factory.mktemp("onnx")
    export_model(ckpt, out)
    return out / "model.onnx"


def _needs_provider(name: str) -> None:
    import onnxruntime as ort

    if name not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no {name} (install onnxruntime-gpu)")


def test_cuda_provider_matches_pytorch_with_tf32_off(ckpt, onnx_fp32):
    import torch

    from export.api import inference_model, random_inputs
    from rtatl_sdk.engines import OnnxEngine

    _needs_provider("CUDAExecutionProvider")
    model, _ = inference_model(ckpt)
    image, centres = random_inputs(8, 12, seed=3)
    with torch.no_grad():
        ref = model(torch.from_numpy(image), torch.from_numpy(centres)).numpy()
    eng = OnnxEngine(onnx_fp32, [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"])
    assert eng.providers[0] == "CUDAExecutionProvider"  # really on the GPU, not a silent fallback
    assert float(np.abs(eng.run(image, centres) - ref).max()) < 1e-3
    eng.close()


def test_tensorrt_engine_builds_and_matches_the_fp16_tolerance(ckpt, media, tmp_path):
    pytest.importorskip("tensorrt")
    from export import export_model

    reps = export_model(ckpt, tmp_path, fp16=True, trt=True, faces=media / "multi_face.jpg")
    engine = next(r for r in reps if r.precision == "tensorrt-fp16")
    assert engine.passed and (tmp_path / "model.engine").stat().st_size > 1e6
    assert engine.checks["real_faces"]["max_abs"] < 0.1


def test_the_tensorrt_runner_splits_batches_beyond_its_profile(ckpt, media, tmp_path):
    pytest.importorskip("tensorrt")
    from export import export_model
    from export.api import random_inputs
    from rtatl_sdk.engines import TensorRTEngine

    export_model(ckpt, tmp_path, fp16=True, trt=True, faces=media / "multi_face.jpg")
    eng = TensorRTEngine(tmp_path / "model.engine")
    n = eng.max_batch + 5
    image, centres = random_inputs(n, 12, seed=1)
    whole = eng.run(image, centres)
    parts = np.concatenate([eng.run(image[i:i + 1], centres[i:i + 1]) for i in range(n)])
    assert whole.shape == (n, 12) and np.abs(whole - parts).max() < 1e-2  # chunked like one at a time
    eng.close()
    from rtatl_sdk.errors import ClosedError

    with pytest.raises(ClosedError):
        eng.run(image[:1], centres[:1])


@pytest.fixture(scope="module")
def bp4d_cache(media, tmp_path_factory):
    """A synthetic BP4D-layout cache. Preparing one needs mediapipe and opencv-contrib, which a GPU
    image may lack: ``RTATL_BP4D_CACHE`` names one prepared elsewhere (``rtatl-synth`` + ``rtatl-prep``)."""
    if os.environ.get("RTATL_BP4D_CACHE"):
        return Path(os.environ["RTATL_BP4D_CACHE"]).resolve()
    from training.data.synthetic import main as synth
    from training.prep import prepare

    d = tmp_path_factory.mktemp("bp4d")
    synth(["BP4D", str(d / "raw"), "--videos", str(media / "single_face.mp4")])
    prepare("BP4D", d / "raw", d / "cache", workers=1, progress=False)
    return d / "cache"


def test_a_mixed_precision_training_step_runs_and_lowers_nothing_to_nan(bp4d_cache, tmp_path):
    cache = bp4d_cache
    res = subprocess.run([sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml",
                          f"data.cache={cache}", f"data.unlabelled_cache={cache}", f"run.out={tmp_path / 'amp'}",
                          "data.fold=null", "optim.steps=4", "optim.batch_size=8", "run.device=cuda", "run.amp=true",
                          "run.log_every=1"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    log = [json.loads(x) for x in (tmp_path / "amp" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(np.isfinite(r["sup"]) for r in log)
    assert all(r["gpu_peak_mib"] > 0 for r in log)  # the steps ran on the GPU


def test_a_checkpoint_resumes_across_devices(bp4d_cache, tmp_path):
    from training.checkpoint import load_checkpoint

    cache = bp4d_cache
    common = [sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml", f"data.cache={cache}",
              f"data.unlabelled_cache={cache}", f"run.out={tmp_path / 'cross'}", "data.fold=null", "optim.batch_size=4"]
    for device, steps in (("cpu", 2), ("cuda", 4), ("cpu", 6)):
        res = subprocess.run(common + [f"run.device={device}", f"optim.steps={steps}"], cwd=REPO, capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, (device, res.stderr[-2000:])
        assert load_checkpoint(tmp_path / "cross" / "last.ckpt")["step"] == steps
