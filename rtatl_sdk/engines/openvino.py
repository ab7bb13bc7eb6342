"""The OpenVINO backend (CPU plugin) for ``.onnx`` model files: ``pip install 'rtatl[openvino]'``."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..contract.precision import precision_of
from ..errors import ModelFileError, ModelNotFoundError
from .base import EngineBase
from .onnx import cpu_session_options, open_session


class OpenVinoEngine(EngineBase):
    """The ``Engine`` on the OpenVINO runtime's CPU plugin, reading the same ``.onnx`` file
    (``pip install 'rtatl[openvino]'``). The card and graph are read and checked through
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
        # f32: on CPUs with bf16 support OpenVINO otherwise runs an fp32 graph (and the float parts
        # of an int8 one) in bfloat16, 0.08 off onnxruntime's probabilities on an AVX-512 EPYC
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
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
        self.precision = precision_of(self.path)
        self.outputs = tuple(o.get_any_name() for o in self._compiled.outputs)

    def _infer(self, image: np.ndarray, centres: np.ndarray, outputs) -> list[np.ndarray]:
        with self._lock:
            out = self._request.infer({"image": image, "centres": centres})
            return [np.array(out[self._compiled.output(name)]) for name in outputs]

    def _release(self) -> None:
        with self._lock:
            self._request = self._compiled = None
