"""The onnxruntime backend: TensorRT EP / CUDA / CPU providers for ``.onnx`` model files.

The model card is read from the file's metadata and validated against this SDK's geometry, and
the graph's inputs and outputs against the card, on load, before any frame is processed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract.card import METADATA_KEY, ModelCard
from ..contract.precision import precision_of
from ..errors import ClosedError, ModelCardError, ModelFileError, ModelNotFoundError
from .base import INPUTS, LOGITS, EngineBase

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
    from .. import store

    out: list = []
    for p in providers:
        if p == "TensorrtExecutionProvider":
            if precision_of(path) == "int8" or n_aus is None:
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
    check_graph(path, card, [(i.name, i.shape) for i in session.get_inputs()], [(o.name, o.shape) for o in session.get_outputs()])
    return session, card


def check_graph(path: Path, card: ModelCard, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]) -> None:
    """The graph's inputs and outputs against its card, before any frame runs: inputs ``image``
    [B,3,S,S] and ``centres`` [B,2N,2] with a dynamic batch axis and the card's S and N, and a
    ``logits`` output [B,N] (other outputs are further heads, named)."""
    names = [n for n, _ in inputs]
    if names != list(INPUTS):
        raise ModelCardError(f"model {path}: inputs {names} are not {list(INPUTS)}")
    n, s = len(card.aus), card.input_size
    want = {"image": [None, 3, s, s], "centres": [None, 2 * n, 2]}
    for name, shape in inputs:
        _check_shape(path, f"input {name!r}", shape, want[name])
    outs = dict(outputs)
    if LOGITS not in outs:
        raise ModelCardError(f"model {path}: has no {LOGITS!r} output (outputs: {list(outs)})")
    _check_shape(path, f"output {LOGITS!r}", outs[LOGITS], [None, n])
    # the further heads the SDK reads: one value per AU, one per expression the card lists
    if "intensity" in outs:
        _check_shape(path, "output 'intensity'", outs["intensity"], [None, n])
    if "emotions" in outs and card.emotions:
        _check_shape(path, "output 'emotions'", outs["emotions"], [None, len(card.emotions)])


def _check_shape(path: Path, what: str, shape: list, want: list) -> None:
    """``shape`` (onnxruntime's: ints for fixed axes, names or None for dynamic ones) against
    ``want`` (None: the batch axis, which must be dynamic)."""
    shape = list(shape or [])
    if len(shape) != len(want):
        raise ModelCardError(f"model {path}: {what} has shape {shape}; its card says {_show(want)}")
    for axis, (got, exp) in enumerate(zip(shape, want)):
        if exp is None:
            if isinstance(got, int):
                raise ModelCardError(f"model {path}: {what} has a fixed batch of {got}; the batch axis must be "
                                     "dynamic (re-export with rtatl-export)")
        elif isinstance(got, int) and got != exp:
            raise ModelCardError(f"model {path}: {what} has {got} on axis {axis}; its card says {_show(want)}")


def _show(want: list) -> str:
    return "[" + ", ".join("B" if w is None else str(w) for w in want) + "]"


class OnnxEngine(EngineBase):
    """The ``Engine`` on onnxruntime; thread-safe (onnxruntime sessions are). ``providers`` tells
    which onnxruntime really uses (it falls back silently when a provider's libraries are
    missing; the fallback is logged)."""

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
        self.precision = precision_of(self.path)
        self.outputs = tuple(o.name for o in self.session.get_outputs())
        missing = [name for name in (p if isinstance(p, str) else p[0] for p in chosen) if name not in self.providers]
        if missing:
            log.warning("model %s: onnxruntime does not use %s (libraries missing?); running on %s",
                        self.path.name, ", ".join(missing), ", ".join(self.providers))

    def _infer(self, image: np.ndarray, centres: np.ndarray, outputs) -> list[np.ndarray]:
        session = self.session  # one reference: a close() in another thread cannot pull it away mid-run
        if session is None:
            raise ClosedError(f"model {self.path}: this engine is closed")
        return session.run(list(outputs), {"image": image, "centres": centres})

    def _release(self) -> None:
        self.session = None  # onnxruntime frees the session with its last reference
