"""Export: graph contents, card, batch consistency, fp16/int8 error reports, bad checkpoints."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.contract.card import ModelCard
from rtatl_sdk.errors import RTATLError
from training.checkpoint import write_initial_checkpoint
from training.config import TrainConfig
from training.model import InferenceModel, count_parameters


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = TrainConfig.model_validate({"data": {"cache": "unused"}})
    return write_initial_checkpoint(tmp_path_factory.mktemp("ckpt") / "init.ckpt", cfg, AU_SETS["BP4D"])


@pytest.fixture(scope="module")
def exported(ckpt, media, tmp_path_factory):
    from export import export_model

    out = tmp_path_factory.mktemp("export")
    reports = export_model(ckpt, out, fp16=True, int8=True, calib=media / "WolfgangLanger_Pexels.mp4",
                           faces=media / "multi_face.jpg", calib_faces=32)
    return out, {r.precision: r for r in reports}


pytestmark = pytest.mark.media


def test_graph_has_only_inference_parameters(exported, ckpt):
    from training.checkpoint import model_from_checkpoint

    out, _ = exported
    m = onnx.load(str(out / "model.onnx"))
    n_onnx = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    model, _ = model_from_checkpoint(ckpt)
    n_inf = count_parameters(InferenceModel(model.backbone))
    # batch norms are folded into the convolutions on export: a handful of parameters differ
    assert abs(n_onnx - n_inf) / n_inf < 0.01
    assert count_parameters(model) - n_inf > 2e6  # the auxiliary heads that were left out
    names = " ".join(t.name for t in m.graph.initializer)
    for head in ("generator", "discriminator", "classifier", "flow_head"):
        assert head not in names
    assert m.opset_import[0].version >= 17
    assert [i.name for i in m.graph.input] == ["image", "centres"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_every_file_passed_and_reports_errors(exported):
    out, reps = exported
    assert set(reps) == {"fp32", "fp16", "int8"} and all(r.passed for r in reps.values())
    assert reps["fp32"].checks["real_faces"]["max_abs"] < 1e-4
    for p in ("fp16", "int8"):
        c = reps[p].checks["real_faces"]
        assert c["n"] >= 5 and 0.0 <= c["flip_share"] <= 0.05 and c["max_abs"] > 0
    sizes = {p: r.size_bytes for p, r in reps.items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    report = json.loads((out / "export_report.json").read_text())
    assert len(report) == 3


def test_card_read_back_equals_written(exported):
    from export.api import read_card

    out, _ = exported
    written = ModelCard.from_json((out / "model.card.json").read_text())
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        assert read_card(out / name) == written
    assert written.aus == [f"AU{a:02d}" for a in AU_SETS["BP4D"]]
    assert "untrained" in written.provenance.training_data


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_image_alone_equals_image_in_batch_of_8(exported, media, name):
    import onnxruntime as ort

    from export.faces import collect_faces

    out, _ = exported
    image, centres = collect_faces(media / "multi_face.jpg", AU_SETS["BP4D"])
    image, centres = np.concatenate([image, image[:3]]), np.concatenate([centres, centres[:3]])  # 8 real faces
    sess = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
    batch = sess.run(None, {"image": image, "centres": centres})[0]
    alone = np.concatenate([sess.run(None, {"image": image[i:i + 1], "centres": centres[i:i + 1]})[0] for i in range(8)])
    assert batch.shape == (8, 12)
    assert np.abs(batch - alone).max() < 1e-5


def test_verify_cli_reruns_the_checks(exported, ckpt, media):
    out, _ = exported
    res = subprocess.run([sys.executable, "-m", "export.cli", "--verify", str(out / "model.int8.onnx"),
                          "--ckpt", str(ckpt), "--faces", str(media / "single_face.jpg")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "model.int8.onnx: int8" in res.stdout and "PASSED" in res.stdout


def test_bad_checkpoints_and_options(tmp_path, ckpt):
    from export import ExportError, export_model

    data = ckpt.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(RTATLError, match="truncated or not a checkpoint"):
        export_model(tmp_path / "trunc.ckpt", tmp_path / "o1")
    (tmp_path / "other.ckpt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(RTATLError, match="other.ckpt: cannot be read"):
        export_model(tmp_path / "other.ckpt", tmp_path / "o2")
    with pytest.raises(ExportError, match="--int8 needs --calib"):
        export_model(ckpt, tmp_path / "o3", int8=True)
    res = subprocess.run([sys.executable, "-m", "export.cli", "--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o4")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "missing.ckpt: no such file" in res.stderr


def test_trt_without_gpu_is_a_clear_error(ckpt, tmp_path):
    import torch

    from export import ExportError
    from export.api import build_trt_engine

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by the gpu test")
    with pytest.raises(ExportError, match="CUDA GPU|tensorrt"):
        build_trt_engine(tmp_path / "m.onnx", tmp_path / "m.engine")


@pytest.mark.gpu
def test_tensorrt_engine_and_fp16_on_cuda(ckpt, media, tmp_path):
    import onnxruntime as ort

    from export import export_model

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    reps = export_model(ckpt, tmp_path, fp16=True, trt=True, faces=media / "multi_face.jpg")
    assert (tmp_path / "model.engine").stat().st_size > 1e6
    from export.api import verify_model

    rep = verify_model(tmp_path / "model.fp16.onnx", ckpt, media / "multi_face.jpg", providers=["CUDAExecutionProvider"])
    assert rep.passed and rep.checks["real_faces"]["max_abs"] < 0.1
    assert all(r.passed for r in reps)
    engine = next(r for r in reps if r.precision == "tensorrt-fp16")
    assert {"random_batch1", "random_batch3", "random_batch8", "real_faces"} <= set(engine.checks)  # verified like the rest
