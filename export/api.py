"""Export and verification steps behind ``rtatl-export``."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtatl_sdk import __version__ as sdk_version
from rtatl_sdk.contract import geometry
from rtatl_sdk.contract.au import au_label
from rtatl_sdk.contract.card import METADATA_KEY, ModelCard, Provenance
from rtatl_sdk.contract.precision import FILE_NAMES, precision_of
from rtatl_sdk.contract.preprocess import sigmoid
from rtatl_sdk.errors import ExportError, RTATLError

log = logging.getLogger(__name__)

OPSET = 17  # >= 16 for roi_align(aligned=True); 17 gives TensorRT its LayerNorm layer
FP32_TOLERANCE = 1e-4
VERIFY_BATCHES = (1, 3, 8)



@dataclass
class FileReport:
    path: str
    precision: str
    size_bytes: int = 0
    checks: dict = field(default_factory=dict)
    passed: bool = False

    def summary(self) -> str:
        parts = [f"{Path(self.path).name}: {self.precision}, {self.size_bytes / 1e6:.1f} MB"]
        for name, c in self.checks.items():
            if isinstance(c, dict) and "max_abs" in c:
                flips = f", flips {100 * c['flip_share']:.2f}%" if "flip_share" in c else ""
                parts.append(f"{name}: max |dlogit| {c['max_abs']:.2e}{flips}")
        parts.append("PASSED" if self.passed else "FAILED")
        return "; ".join(parts)


# --- building the graph -------------------------------------------------------------------
def inference_model(ckpt: Path):
    """The inference graph of a checkpoint (backbone only) and the checkpoint dict."""
    from training.checkpoint import model_from_checkpoint
    from training.model import InferenceModel

    model, state = model_from_checkpoint(Path(ckpt))
    return InferenceModel(model.backbone).eval(), state


def card_from_checkpoint(state: dict, ckpt: Path) -> ModelCard:
    cfg = state["config"]
    data = cfg["data"]
    metrics = state.get("metrics") or {}
    trained = (f"{data['dataset']} cache {data['cache']}" + (f", fold {data['fold']}" if data.get("fold") else ", all subjects")
               + (f"; unlabelled {data['unlabelled_cache']}" if data.get("unlabelled_cache") else "")
               + f"; variant {cfg['model']['variant']}, {state.get('step')} steps")
    aus = [au_label(a) for a in state["aus"]]
    thresholds = state.get("thresholds") or [0.5] * len(aus)
    extra: dict = {}
    outputs = {"logits": "float32 [B,N]"}
    if cfg["model"].get("intensity"):
        outputs["intensity"] = "float32 [B,N], 0-5"
        extra["intensity_scale"] = state.get("intensity_scale", f"0-5: {data['dataset']}'s intensity coding (FACS A-E as 1-5)")
    if cfg["model"].get("emotions"):
        from rtatl_sdk.contract.emotions import EMOTIONS

        names = state.get("emotions") or list(EMOTIONS)[:cfg["model"]["emotions"]]
        outputs["emotions"] = f"float32 [B,{len(names)}], expression logits ({', '.join(names)})"
        extra["emotions"] = names
    if len(outputs) > 1:
        extra["outputs"] = outputs
    for key in ("intensity_rest", "calibration", "thresholds_strict"):
        if state.get(key) is not None:
            extra[key] = state[key]
    return ModelCard(aus=aus, thresholds=thresholds, version=sdk_version, **extra,
                     provenance=Provenance(training_data=state.get("training_data", trained), checkpoint=Path(ckpt).name,
                                           licence=state.get("licence", "MIT"), notes=state.get("notes", "")),
                     metrics=metrics)


def write_card(onnx_path: Path, card: ModelCard) -> None:
    import onnx

    m = onnx.load(str(onnx_path))
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_json()
    onnx.save(m, str(onnx_path))


def read_card(path: Path) -> ModelCard:
    """The card embedded in an ONNX file, read by the SDK's own engine (one reader for both)."""
    from rtatl_sdk.engines import OnnxEngine

    try:
        return OnnxEngine(Path(path), ["CPUExecutionProvider"]).card
    except RTATLError as exc:
        raise ExportError(str(exc)) from None


def export_onnx(model, path: Path) -> None:
    import warnings

    import torch

    n2 = 2 * model.backbone.n_aus
    outputs = model.output_names if hasattr(model, "output_names") else ["logits"]
    x = torch.zeros(2, 3, geometry.CROP_SIZE, geometry.CROP_SIZE)  # batch 2: keeps the batch axis dynamic
    c = torch.full((2, n2, 2), geometry.CROP_SIZE / 2.0)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention path does not export
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape asserts inside MultiheadAttention
            torch.onnx.export(model, (x, c), str(path), input_names=["image", "centres"], output_names=outputs,
                              dynamic_axes={"image": {0: "batch"}, "centres": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                              opset_version=OPSET, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def roi_path_nodes(model) -> list[str]:
    """Names of RoiAlign nodes and of every node computing their box / batch-index inputs."""
    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[str] = set()
    stack = [i for n in model.graph.node if n.op_type == "RoiAlign" for i in n.input[1:]]
    keep |= {n.name for n in model.graph.node if n.op_type == "RoiAlign"}
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in keep:
            keep.add(node.name)
            stack.extend(node.input)
    return sorted(keep)


def to_fp16(src: Path, dst: Path) -> None:
    """Half-precision weights and activations, float32 inputs/outputs; RoiAlign and its box
    arithmetic stay float32 (box coordinates need the precision)."""
    import warnings

    import onnx
    from onnxconverter_common import float16

    m = onnx.load(str(src))
    blocked = roi_path_nodes(m)
    casts_to_float = {n.name for n in m.graph.node if n.op_type == "Cast" and n.name not in blocked
                      and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny weights rounded to fp16's range
        m16 = float16.convert_float_to_float16(m, keep_io_types=True, node_block_list=blocked)
    # the converter types these Casts' outputs as float16 but leaves their target type: fix it
    for n in m16.graph.node:
        if n.name in casts_to_float:
            for a in n.attribute:
                if a.name == "to":
                    a.i = onnx.TensorProto.FLOAT16
    onnx.save(m16, str(dst))


def to_int8(src: Path, dst: Path, image: np.ndarray, centres: np.ndarray) -> None:
    """Static QDQ INT8 calibrated on real faces. Only Conv/MatMul/Gemm are quantized, so the RoI
    batch-index and box arithmetic stays in float (quantizing it mixes images within a batch)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({"image": image[i:i + 1], "centres": centres[i:i + 1]} for i in range(len(image)))

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # reduce_range: 7-bit weights. U8S8 products saturate on x86 CPUs without VNNI (AVX2,
        # AVX-512 without VNNI), which flipped 12 % of an untrained model's decisions on an AVX2
        # machine; onnxruntime's quantization guide recommends it there ("reduce_range").
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])


# --- verification -------------------------------------------------------------------------
def random_inputs(n: int, n_aus: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = geometry.CROP_SIZE
    image = rng.normal(0, 1, (n, 3, s, s)).astype(np.float32)
    centres = rng.uniform(geometry.ROI_SIZE / 2, s - geometry.ROI_SIZE / 2, (n, 2 * n_aus, 2)).astype(np.float32)
    return image, centres


def _compare(out: np.ndarray, ref: np.ndarray, thresholds: np.ndarray) -> dict:
    p_out, p_ref = sigmoid(out), sigmoid(ref)
    return {"max_abs": float(np.abs(out - ref).max()), "mean_abs": float(np.abs(out - ref).mean()),
            "flip_share": float(((p_out >= thresholds) != (p_ref >= thresholds)).mean()), "n": int(len(out))}


def _within(precision: str, c: dict, max_flip: float, fp16_max_abs: float) -> bool:
    if precision == "fp32":
        return c["max_abs"] <= FP32_TOLERANCE
    if precision == "fp16":
        return c["max_abs"] <= fp16_max_abs
    return c["flip_share"] <= max_flip


def _logits(out):
    """The logits of the reference's output (a model with the intensity head returns a pair)."""
    return out[0] if isinstance(out, tuple) else out


def _parity(rep: FileReport, run, reference, faces, thr: np.ndarray, n_aus: int, within) -> bool:
    """Parity with the PyTorch reference on random batches and on real faces; True when it holds."""
    import torch

    ok = True
    for b in VERIFY_BATCHES:
        image, centres = random_inputs(b, n_aus, seed=10 + b)
        with torch.no_grad():
            ref = _logits(reference(torch.from_numpy(image), torch.from_numpy(centres))).numpy()
        c = _compare(run(image, centres), ref, thr)
        rep.checks[f"random_batch{b}"] = c
        # random inputs are far from the calibration data: int8 is judged on real faces only
        ok &= within(c) if rep.precision != "int8" else True
    if faces is not None:
        image, centres = faces
        with torch.no_grad():
            ref = _logits(reference(torch.from_numpy(image), torch.from_numpy(centres))).numpy()
        outs = np.concatenate([run(image[i:i + 8], centres[i:i + 8]) for i in range(0, len(image), 8)])
        c = _compare(outs, ref, thr)
        rep.checks["real_faces"] = c
        ok &= within(c)
    elif rep.precision == "int8":
        rep.checks["real_faces"] = "not checked: no faces given"
        ok = False
    return ok


#: the expression head's agreement with PyTorch on real faces: fp32 probabilities within this, and
#: for fp16 / int8 the share of faces whose top expression may differ
EMOTION_FP32_TOLERANCE, EMOTION_MAX_TOP_FLIP = 1e-3, 0.1


def _emotion_parity(rep: FileReport, engine, reference, faces, precision: str) -> bool:
    """The ``emotions`` output against the PyTorch reference on the real faces: the largest
    difference of an expression probability and the share of faces whose top expression agrees."""
    import torch

    from rtatl_sdk.contract.emotions import softmax

    image, centres = faces
    with torch.no_grad():
        ref = softmax(reference(torch.from_numpy(image), torch.from_numpy(centres))[-1].numpy())
    out = softmax(np.concatenate([engine.infer(image[i:i + 8], centres[i:i + 8], ("emotions",))["emotions"]
                                  for i in range(0, len(image), 8)]))
    c = {"max_abs_prob": float(np.abs(out - ref).max()), "top_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
         "n": int(len(out))}
    rep.checks["emotions_real_faces"] = c
    if precision == "fp32":
        return c["max_abs_prob"] <= EMOTION_FP32_TOLERANCE
    return c["top_agreement"] >= 1.0 - EMOTION_MAX_TOP_FLIP


def verify_file(path: Path, precision: str, reference=None, faces=None, providers=None,
                max_flip: float = 0.05, fp16_max_abs: float = 0.1) -> FileReport:
    """Check one exported ONNX file; ``reference`` is the PyTorch inference model (if at hand).

    Checks: ONNX checker; the embedded card (through the SDK's engine, as users load it); batch
    consistency (each image alone equals the same image inside a batch of 8); parity with
    PyTorch on random inputs at batch 1, 3, 8 and on real aligned faces. fp32 must agree within
    1e-4; fp16 within ``fp16_max_abs`` and int8 with at most ``max_flip`` of AU decisions
    flipped at the card's thresholds.
    """
    import onnx

    from rtatl_sdk.engines import OnnxEngine

    rep = FileReport(str(path), precision, Path(path).stat().st_size)
    try:
        onnx.checker.check_model(str(path))
        rep.checks["onnx_checker"] = "ok"
    except Exception as exc:  # onnx raises ValidationError and others
        rep.checks["onnx_checker"] = f"failed: {exc}"
        return rep
    # fp32 parity on CUDA needs TF32 off: onnxruntime's CUDA provider uses TF32 by default on
    # Ampere and newer GPUs (provider option use_tf32, onnxruntime.ai/docs/execution-providers/
    # CUDA-ExecutionProvider.html), which moves logits by ~1e-3, past the 1e-4 fp32 tolerance
    providers = [("CUDAExecutionProvider", {"use_tf32": 0}) if p == "CUDAExecutionProvider" else p
                 for p in (providers or ["CPUExecutionProvider"])]
    try:
        engine = OnnxEngine(Path(path), providers)
    except RTATLError as exc:
        raise ExportError(str(exc)) from None
    rep.checks["card"] = "ok"
    card, run = engine.card, engine.run
    img8, cen8 = random_inputs(8, len(card.aus), seed=1)
    batch = run(img8, cen8)
    alone = np.concatenate([run(img8[i:i + 1], cen8[i:i + 1]) for i in range(8)])
    rep.checks["batch_consistency"] = {"max_abs": float(np.abs(batch - alone).max())}
    ok = rep.checks["batch_consistency"]["max_abs"] <= (1e-4 if precision == "fp32" else 1e-2)
    if not np.all(np.isfinite(batch)):
        rep.checks["finite"] = "non-finite logits"
        ok = False
    if reference is not None:
        def within(c):
            return _within(precision, c, max_flip, fp16_max_abs)

        ok &= _parity(rep, run, reference, faces, np.asarray(card.thresholds, np.float32), len(card.aus), within)
        if "emotions" in engine.outputs and faces is not None:
            ok &= _emotion_parity(rep, engine, reference, faces, precision)
    rep.passed = bool(ok)
    return rep


# --- TensorRT -----------------------------------------------------------------------------
def build_trt_engine(onnx_path: Path, engine_path: Path, max_batch: int = 32) -> None:
    """Serialize a TensorRT engine with a batch profile (1 / 8 / max_batch).

    The network is strongly typed: each layer runs in the precision the ONNX file gives it.
    TensorRT 11 removed ``BuilderFlag.FP16`` for this; under TensorRT 10 the flag would also put
    RoiAlign and its box arithmetic in fp16. So an fp16 engine is built from the fp16 ONNX file
    (RoiAlign kept in fp32 there) and an fp32 engine from the fp32 file (TensorRT developer
    guide, "Strongly Typed Networks"; NetworkDefinitionCreationFlag.STRONGLY_TYPED, TensorRT >= 9)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("--trt needs the tensorrt package (pip install 'rtatl[trt]') and a CUDA GPU") from None
    import torch

    if not torch.cuda.is_available():
        raise ExportError("--trt needs a CUDA GPU; none is visible on this machine")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    s, n2 = geometry.CROP_SIZE, network.get_input(1).shape[1]
    profile.set_shape("image", (1, 3, s, s), (8, 3, s, s), (max_batch, 3, s, s))
    profile.set_shape("centres", (1, n2, 2), (8, n2, 2), (max_batch, n2, 2))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(engine_path).write_bytes(bytes(engine))


def _export_engine(reports: list[FileReport], tmp: Path, out: Path, card: ModelCard, model, real) -> FileReport:
    """Build the engine from this run's verified fp16 file (made from the verified fp32 file when
    --fp16 was not asked), verify it, and move it to ``out`` (or ``out/rejected``)."""
    by = {r.precision: r for r in reports}
    base = by.get("fp16") or by["fp32"]
    if not base.passed:
        raise ExportError(f"--trt: {Path(base.path).name} failed its checks; no engine is built from it")
    source = Path(base.path)
    if base.precision == "fp32":
        source = tmp / "trt_source.fp16.onnx"
        to_fp16(Path(base.path), source)
    build_trt_engine(source, tmp / FILE_NAMES["tensorrt-fp16"])
    (tmp / (FILE_NAMES["tensorrt-fp16"] + ".card.json")).write_text(card.to_json())
    rep = verify_engine(tmp / FILE_NAMES["tensorrt-fp16"], card, model, real)
    dest = out if rep.passed else out / "rejected"
    dest.mkdir(parents=True, exist_ok=True)
    for name in (FILE_NAMES["tensorrt-fp16"], FILE_NAMES["tensorrt-fp16"] + ".card.json"):
        shutil.move(str(tmp / name), dest / name)
    rep.path = str(dest / FILE_NAMES["tensorrt-fp16"])
    return rep


def verify_engine(path: Path, card: ModelCard, reference, faces, fp16_max_abs: float = 0.1) -> FileReport:
    """The engine through the SDK's runner, held to the fp16 file's tolerance against PyTorch on
    random batches 1/3/8 and on real faces, like every other export."""
    from rtatl_sdk.engines import TensorRTEngine

    rep = FileReport(str(path), "tensorrt-fp16", Path(path).stat().st_size)
    engine = TensorRTEngine(Path(path))
    try:
        def within(c):
            return _within("fp16", c, 0.0, fp16_max_abs)

        rep.passed = bool(_parity(rep, engine.run, reference, faces, np.asarray(card.thresholds, np.float32),
                                  len(card.aus), within))
    finally:
        engine.close()
    return rep


# --- the whole export -----------------------------------------------------------------------
def export_model(ckpt, out, *, fp16: bool = False, int8: bool = False, calib=None, trt: bool = False,
                 faces=None, max_flip: float = 0.05, calib_faces: int = 64) -> list[FileReport]:
    """Export ``ckpt`` into ``out``: model.onnx (always), model.fp16.onnx, model.int8.onnx,
    model.engine. Each file is verified in a temporary folder and moved into ``out`` only when
    it passes; a failing file goes to ``out/rejected/`` and ExportError is raised at the end."""
    from training.model import count_parameters

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, state = inference_model(Path(ckpt))
    card = card_from_checkpoint(state, Path(ckpt))
    log.info("inference graph: %.2f M parameters (auxiliary heads removed)", count_parameters(model) / 1e6)
    aus = tuple(state["aus"])
    real = None
    if calib is not None or faces is not None:
        real = collect_faces_for(faces or calib, aus, calib_faces)
    elif int8:
        raise ExportError("--int8 needs --calib PATH: images or videos with real faces to calibrate on")
    reports: list[FileReport] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = tmp / FILE_NAMES["fp32"]
        export_onnx(model, fp32)
        write_card(fp32, card)
        jobs = [("fp32", fp32)]
        if fp16:
            to_fp16(fp32, tmp / FILE_NAMES["fp16"])
            jobs.append(("fp16", tmp / FILE_NAMES["fp16"]))
        if int8:
            calib_set = real if faces is None else collect_faces_for(calib, aus, calib_faces)
            to_int8(fp32, tmp / FILE_NAMES["int8"], *calib_set)
            write_card(tmp / FILE_NAMES["int8"], card)
            jobs.append(("int8", tmp / FILE_NAMES["int8"]))
        for precision, path in jobs:
            rep = verify_file(path, precision, model, real, max_flip=max_flip)
            dest = out / path.name if rep.passed else out / "rejected" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), dest)
            rep.path = str(dest)
            reports.append(rep)
            log.debug(rep.summary())
        if trt:  # from this run's verified files, never from a stale or rejected one in out/
            reports.append(_export_engine(reports, tmp, out, card, model, real))
    (out / "model.card.json").write_text(json.dumps(json.loads(card.to_json()), indent=1))
    (out / "export_report.json").write_text(json.dumps([r.__dict__ for r in reports], indent=1))
    failed = [r for r in reports if not r.passed]
    if failed:
        raise ExportError("verification failed: " + " | ".join(r.summary() for r in failed) + f" (see {out / 'export_report.json'})")
    return reports


def collect_faces_for(path, aus, n: int):
    from .faces import collect_faces

    return collect_faces(path, aus, max_faces=n)


def verify_model(path, ckpt=None, faces=None, providers=None, max_flip: float = 0.05) -> FileReport:
    """Re-run the checks on an exported file; parity needs the checkpoint it came from."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    reference, real = None, None
    card = read_card(path)
    if ckpt is not None:
        reference, state = inference_model(Path(ckpt))
        if [au_label(a) for a in state["aus"]] != card.aus:
            raise ExportError(f"{path}: its AUs {card.aus} are not those of checkpoint {ckpt}")
    if faces is not None:
        real = collect_faces_for(faces, card.au_numbers, 64)
    return verify_file(path, precision_of(path), reference, real, providers=providers, max_flip=max_flip)
