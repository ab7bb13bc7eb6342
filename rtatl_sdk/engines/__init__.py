"""AU-model engines behind one contract (``Engine``) and one registry of backends.

The backend comes from the model file: ``.onnx`` -> onnxruntime (TensorRT EP, CUDA or CPU
providers) unless another backend that reads ``.onnx`` is named (``openvino``);
``.engine``/``.plan`` -> TensorRT. ``register_backend`` adds a backend (a factory returning an
``Engine``); ``load_engine`` opens a model file with the right one, and every backend reads and
validates the model card before any frame is processed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..contract.precision import ENGINE_SUFFIXES
from ..errors import InputError, ModelFileError, ModelNotFoundError
from .base import INPUTS, LOGITS, Engine, EngineBase
from .onnx import (
    PROVIDER_PREFERENCE,
    TRT_PROFILE,
    OnnxEngine,
    best_providers,
    check_graph,
    cpu_session_options,
    open_session,
    provider_list,
)
from .openvino import OpenVinoEngine
from .tensorrt import TensorRTEngine

#: factory(path, providers, threads) -> Engine
Factory = Callable[[Path, "list[str] | None", int], Engine]


@dataclass(frozen=True)
class Backend:
    name: str
    suffixes: tuple[str, ...]  #: model files it reads
    factory: Factory
    default: bool  #: used for its suffixes when no backend is named


_REGISTRY: dict[str, Backend] = {}


def register_backend(name: str, factory: Factory, suffixes: tuple[str, ...] = (".onnx",), default: bool = False) -> None:
    """Add (or replace) a backend. ``default=True`` makes it the one for ``suffixes`` when no
    backend is named (the last registered default wins)."""
    if not name or not suffixes:
        raise InputError(f"backend {name!r}", "needs a name and the model file suffixes it reads")
    _REGISTRY[name] = Backend(name, tuple(suffixes), factory, default)


def backends() -> tuple[str, ...]:
    """Names of the registered backends."""
    return tuple(_REGISTRY)


def backend_for(path: Path, backend: str | None = None) -> Backend:
    """The backend that opens ``path``: ``backend`` by name, else the default one for its suffix."""
    suffix = Path(path).suffix
    if backend is not None:
        if backend not in _REGISTRY:
            raise InputError(f"backend {backend!r}", f"must be one of {', '.join(_REGISTRY)}")
        b = _REGISTRY[backend]
        if suffix not in b.suffixes:
            raise InputError(f"backend {backend!r}", f"reads {', '.join(b.suffixes)} model files, not {Path(path).name}")
        return b
    found = [b for b in _REGISTRY.values() if b.default and suffix in b.suffixes]
    if not found:
        known = sorted({s for b in _REGISTRY.values() for s in b.suffixes})
        raise ModelFileError(f"model {path}: no backend reads {suffix or 'files without a suffix'} model files "
                             f"({', '.join(known)})")
    return found[-1]


def load_engine(path: Path, providers: list[str] | None = None, threads: int = 0, backend: str | None = None) -> Engine:
    """The engine for a model file (see the module's doc for the choice of backend)."""
    path = Path(path)
    b = backend_for(path, backend)
    if not path.is_file():
        raise ModelNotFoundError(f"model {path}: no such file")
    engine = b.factory(path, providers, threads)
    if not isinstance(engine, Engine):
        raise ModelFileError(f"model {path}: backend {b.name!r} returned {type(engine).__name__}, which is not an Engine")
    return engine


register_backend("onnxruntime", lambda p, providers, threads: OnnxEngine(p, providers, threads), (".onnx",), default=True)
register_backend("openvino", lambda p, providers, threads: OpenVinoEngine(p, threads), (".onnx",))
register_backend("tensorrt", lambda p, providers, threads: TensorRTEngine(p), ENGINE_SUFFIXES, default=True)

__all__ = ["INPUTS", "LOGITS", "PROVIDER_PREFERENCE", "TRT_PROFILE", "Backend", "Engine", "EngineBase", "OnnxEngine",
           "OpenVinoEngine", "TensorRTEngine", "backend_for", "backends", "best_providers", "check_graph",
           "cpu_session_options", "load_engine", "open_session", "provider_list", "register_backend"]
