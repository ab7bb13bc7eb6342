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
from .errors import ModelCardError, ModelFileError, ModelNotFoundError

log = logging.getLogger(__name__)

#: Preferred order of onnxruntime providers when present.
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def best_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p in PROVIDER_PREFERENCE if p in have] or ["CPUExecutionProvider"]


class OnnxEngine:
    """``run(image, centres) -> logits`` on onnxruntime; thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"model {self.path}: no such file")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers or best_providers())
        except Exception as exc:  # onnxruntime's exception types are its own
            raise ModelFileError(f"model {self.path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelCardError(f"model {self.path}: has no RTATL model card; export it with rtatl-export")
        self.card = ModelCard.from_json(meta[METADATA_KEY], source=str(self.path))
        self.card.check_geometry(str(self.path))
        names = [i.name for i in self.session.get_inputs()]
        if names != ["image", "centres"]:
            raise ModelCardError(f"model {self.path}: inputs {names} are not ['image', 'centres']")
        self.providers = self.session.get_providers()

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": image, "centres": centres})[0]


class TensorRTEngine:
    """A serialized TensorRT engine from ``rtatl-export --trt``; its card is the sidecar
    ``<engine>.card.json``. Needs ``tensorrt`` and ``cuda-python`` and a CUDA GPU."""

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
            raise ModelFileError(f"model {self.path}: TensorRT engines need tensorrt and cuda-python ({exc})") from None
        self._trt, self._cudart = trt, cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelFileError(f"model {self.path}: TensorRT could not deserialize it (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self._lock = threading.Lock()
        self.providers = ["TensorRT"]

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        b = image.shape[0]
        out = np.empty((b, len(self.card.aus)), np.float32)
        with self._lock:
            bufs = []
            try:
                for name, arr in (("image", image), ("centres", centres), ("logits", out)):
                    err, ptr = cudart.cudaMalloc(arr.nbytes)
                    if err != cudart.cudaError_t.cudaSuccess:
                        raise ModelFileError(f"model {self.path}: cudaMalloc of {arr.nbytes} bytes failed ({err})")
                    bufs.append(ptr)
                    self.context.set_tensor_address(name, ptr)
                    if name != "logits":
                        self.context.set_input_shape(name, arr.shape)
                        cudart.cudaMemcpy(ptr, np.ascontiguousarray(arr).ctypes.data, arr.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
                if not self.context.execute_async_v3(0):
                    raise ModelFileError(f"model {self.path}: TensorRT execution failed")
                cudart.cudaMemcpy(out.ctypes.data, bufs[2], out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
            finally:
                for ptr in bufs:
                    cudart.cudaFree(ptr)
        return out


def load_engine(path: Path, providers: list[str] | None = None, threads: int = 0):
    path = Path(path)
    if path.suffix in (".engine", ".plan"):
        if not path.is_file():
            raise ModelNotFoundError(f"model {path}: no such file")
        return TensorRTEngine(path)
    return OnnxEngine(path, providers, threads)
