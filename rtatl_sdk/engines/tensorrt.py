"""The TensorRT backend: serialized engines (``.engine``/``.plan``) from ``rtatl-export --trt``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..contract.card import ModelCard
from ..contract.precision import precision_of
from ..errors import InputError, ModelCardError, ModelFileError
from .base import LOGITS, EngineBase


class TensorRTEngine(EngineBase):
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
        self.precision = precision_of(self.path)
        self.outputs = (LOGITS,)
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

    def _infer(self, image: np.ndarray, centres: np.ndarray, outputs) -> list[np.ndarray]:
        return [self._run(image, centres)]

    def _run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
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

    def _release(self) -> None:
        for ptr in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
