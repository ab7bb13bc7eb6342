"""AU model engines: onnxruntime (TensorRT / CUDA / CPU providers) and native TensorRT engines.

The engine is chosen from the file: ``.onnx`` -> onnxruntime, ``.engine``/``.plan`` ->
TensorRT. The model card is read and validated against this SDK's geometry on load, before
any frame is processed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from .card import METADATA_KEY, ModelCard
from .errors import InputError, ModelCardError, ModelFileError, ModelNotFoundError

log = logging.getLogger(__name__)

#: Preferred order of onnxruntime providers when present.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def best_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in PROVIDER_PREFERENCE if p in have] or ["CPUExecutionProvider"]


#: TensorRT EP batch profile (min, opt, max): shapes outside it would rebuild the engine.
TRT_PROFILE = (1, 8, 32)


def provider_list(providers: list[str], path: Path, n_aus: int | None, size: int = 192) -> list:
    """onnxruntime providers with their options. The TensorRT EP gets an engine cache in the model
    store and an explicit batch profile (onnxruntime.ai/docs/execution-providers/
    TensorRT-ExecutionProvider.html: trt_engine_cache_*, trt_profile_*_shapes), so a process does
    not rebuild its engine at start or per new batch size; it is left out for an INT8 file
    (TensorRT refuses QDQ activations with non-zero zero points) and when the AU count is unknown."""
    from . import store

    out: list = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            if ".int8." in Path(path).name or n_aus is None:
                continue
            shape = {k: f"image:{b}x3x{size}x{size},centres:{b}x{2 * n_aus}x2" for k, b in zip(("min", "opt", "max"), TRT_PROFILE)}
            out.append((p, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(store.store_dir() / "trt_cache"),
                            "trt_profile_min_shapes": shape["min"], "trt_profile_opt_shapes": shape["opt"],
                            "trt_profile_max_shapes": shape["max"]}))
        else:
            out.append(p)
    return out


def cpu_session_options(threads: int = 0):
    """onnxruntime session options for the SDK's sessions: ``threads`` intra-op threads (0: one
    per core) that sleep rather than spin between operators. Spinning wins about 5 ms per AU
    inference when nothing else runs, but in a video pipeline it takes the core the face stages
    need: 26.9 vs 31.4 frames/s end to end on a 2-core machine (``bench/bench_video.py --spin``,
    docs/benchmarks.md)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def open_session(path: Path, opts, providers):
    """An onnxruntime session on ``path`` and its validated model card."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # onnxruntime's exception types are its own
        raise ModelFileError(f"model {path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ModelCardError(f"model {path}: has no RTATL model card; export it with rtatl-export")
    card = ModelCard.from_json(meta[METADATA_KEY], source=str(path))
    card.check_geometry(str(path))
    names = [i.name for i in session.get_inputs()]
    if names != ["image", "centres"]:
        raise ModelCardError(f"model {path}: inputs {names} are not ['image', 'centres']")
    return session, card


class OnnxEngine:
    """``run(image, centres) -> logits`` on onnxruntime; thread-safe (onnxruntime sessions are).
    ``providers`` tells which onnxruntime really uses (it falls back silently when a provider's
    libraries are missing; the fallback is logged)."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model {self.path}: no such file")
        opts = cpu_session_options(threads)
        wanted = list(providers or best_providers())
        n_aus = None
        if "TensorrtExecutionProvider" in wanted:  # its shape profile needs the card's AU count
            n_aus = len(open_session(self.path, opts, ["CPUExecutionProvider"])[1].aus)
        chosen = provider_list(wanted, self.path, n_aus)
        self.session, self.card = open_session(self.path, opts, chosen)
        self.providers = self.session.get_providers()
        missing = [name for name in (p if isinstance(p, str) else p[0] for p in chosen) if name not in self.providers]
        if missing:
            log.warning("model %s: onnxruntime does not use %s (libraries missing?); running on %s",
                        self.path.name, ", ".join(missing), ", ".join(self.providers))

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": image, "centres": centres})[0]


class OpenVinoEngine:
    """``run(image, centres) -> logits`` on the OpenVINO runtime's CPU plugin, reading the same
    ``.onnx`` file (``pip install 'rtatl[openvino]'``). The card is read and checked through
    onnxruntime as for ``OnnxEngine``. Thread-safe (one infer request, used under a lock)."""

    def __init__(self, path: Path, threads: int = 0):
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelFileError(f"model {path}: the OpenVINO engine needs openvino ({exc}); "
                                 "pip install 'rtatl[openvino]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model {self.path}: no such file")
        self.card = open_session(self.path, cpu_session_options(1), ["CPUExecutionProvider"])[1]
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with C++ text
            raise ModelFileError(f"model {self.path}: OpenVINO cannot compile it ({str(exc)[:200]})") from None
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self.providers = ["OpenVINO CPU"]

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._request.infer({"image": image, "centres": centres})
            return np.array(out[self._compiled.output("logits")])


class TensorRTEngine:
    """A serialized TensorRT engine from ``rtatl-export --trt``; its card is the sidecar
    ``<engine>.card.json``. Needs ``tensorrt`` and ``cuda-python`` (``pip install 'rtatl[trt]'``)
    and a CUDA GPU.

    The engine owns its CUDA stream and device buffers (allocated once for the largest batch of
    its optimisation profile); a batch larger than the profile's is run in chunks, and every
    input is checked (float32, the card's shapes) before it reaches the GPU."""

    def __init__(self, path: Path):
        self.path = Path(path)
        card_path = self.path.with_name(self.path.name + ".card.json")
        if not card_path.is_file():
            raise ModelCardError(f"model {self.path}: its card {card_path.name} is missing (rtatl-export writes it)")
        self.card = ModelCard.from_json(card_path.read_text(), source=str(card_path))
        self.card.check_geometry(str(card_path))
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as exc:
            raise ModelFileError(f"model {self.path}: TensorRT engines need tensorrt and cuda-python ({exc}); "
                                 "pip install 'rtatl[trt]'") from None
        self._trt, self._cudart = trt, cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"model {self.path}: TensorRT could not deserialize it (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        # the profile's (min, opt, max) input shapes: batches outside [min, max] cannot run as one
        shapes = self.engine.get_tensor_profile_shape("image", 0)
        self.min_batch, self.max_batch = int(shapes[0][0]), int(shapes[2][0])
        self._lock = threading.Lock()
        self.providers = ["TensorRT"]
        n, s = len(self.card.aus), self.card.input_size
        self._shapes = {"image": (3, s, s), "centres": (2 * n, 2), "logits": (n,)}
        self._stream = self._call("cudaStreamCreate")
        self._buffers = {name: self._call("cudaMalloc", self.max_batch * int(np.prod(shape)) * 4)
                         for name, shape in self._shapes.items()}

    def _call(self, fn: str, *args):
        """A CUDA runtime call; its error code checked (cuda-python returns (err, value...))."""
        res = getattr(self._cudart, fn)(*args)
        err, rest = (res[0], res[1:]) if isinstance(res, tuple) else (res, ())
        if err != self._cudart.cudaError_t.cudaSuccess:
            raise ModelFileError(f"model {self.path}: {fn} failed ({err})")
        return rest[0] if len(rest) == 1 else None

    def _check(self, name: str, arr) -> np.ndarray:
        arr = np.asarray(arr)
        if arr.dtype != np.float32:
            raise InputError(name, f"dtype {arr.dtype}; the engine takes float32")
        if arr.ndim != 4 - (name == "centres") or arr.shape[1:] != self._shapes[name]:
            raise InputError(name, f"shape {arr.shape}; the engine takes (B, {', '.join(map(str, self._shapes[name]))})")
        return np.ascontiguousarray(arr)  # held by the caller until the copy has finished

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        image, centres = self._check("image", image), self._check("centres", centres)
        if len(image) != len(centres):
            raise InputError("centres", f"{len(centres)} rows for {len(image)} images")
        if len(image) < self.min_batch:
            raise InputError("image", f"batch {len(image)} is below the engine's smallest ({self.min_batch})")
        with self._lock:
            return np.concatenate([self._run_chunk(image[i:i + self.max_batch], centres[i:i + self.max_batch])
                                   for i in range(0, len(image), self.max_batch)])

    def _run_chunk(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        cudart, ctx = self._cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        out = np.empty((len(image), *self._shapes["logits"]), np.float32)
        for name, arr in (("image", image), ("centres", centres)):
            if not ctx.set_input_shape(name, arr.shape):
                raise InputError(name, f"shape {arr.shape} is outside the engine's optimisation profile")
            ctx.set_tensor_address(name, self._buffers[name])
            self._call("cudaMemcpyAsync", self._buffers[name], arr.ctypes.data, arr.nbytes, h2d, self._stream)
        ctx.set_tensor_address("logits", self._buffers["logits"])
        if not ctx.execute_async_v3(self._stream):
            raise ModelFileError(f"model {self.path}: TensorRT execution failed")
        self._call("cudaMemcpyAsync", out.ctypes.data, self._buffers["logits"], out.nbytes, d2h, self._stream)
        self._call("cudaStreamSynchronize", self._stream)
        return out

    def close(self) -> None:
        for ptr in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None


#: AU-model engines for ``.onnx`` files (``AUDetector(backend=...)``, ``rtatl-detect --backend``).
BACKENDS = ("onnxruntime", "openvino")


def load_engine(path: Path, providers: list[str] | None = None, threads: int = 0, backend: str = "onnxruntime"):
    """The engine for a model file: ``.engine``/``.plan`` -> TensorRT; ``.onnx`` -> onnxruntime, or
    the OpenVINO runtime with ``backend="openvino"`` (CPU; measured no faster than onnxruntime on
    an AVX2 AMD machine, see docs/benchmarks.md, but there for CPUs where it is)."""
    path = Path(path)
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}", f"must be one of {', '.join(BACKENDS)}")
    if path.suffix in (".engine", ".plan"):
        if not path.is_file():
            raise ModelNotFoundError(f"model {path}: no such file")
        return TensorRTEngine(path)
    if backend == "openvino":
        return OpenVinoEngine(path, threads)
    return OnnxEngine(path, providers, threads)
