"""The contract every AU-model engine keeps (``Engine``), and what the backends share.

An engine runs the exported inference graph: inputs ``image`` float32 ``[B,3,S,S]`` and
``centres`` float32 ``[B,2N,2]``; outputs by name (``logits`` ``[B,N]`` always; a model may
carry more heads, listed in ``outputs``). It tells which providers and precision really run,
and ``close()`` frees what it holds (sessions, GPU buffers); a closed engine refuses work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..contract.card import ModelCard
from ..errors import ClosedError, InputError

#: The output every AU model has: per-AU logits [B, N].
LOGITS = "logits"
#: The inputs every AU model takes, in this order.
INPUTS = ("image", "centres")


@runtime_checkable
class Engine(Protocol):
    """What ``AUDetector`` needs of an engine (``rtatl_sdk.engines.register_backend`` adds one)."""

    path: Path
    card: ModelCard
    #: the providers / devices actually running the model (not merely asked for)
    providers: list[str]
    #: ``rtatl_sdk.contract.precision`` name of what runs: fp32, fp16, int8, tensorrt-fp16
    precision: str
    #: the model's output names (``logits`` first)
    outputs: tuple[str, ...]

    def infer(self, image: np.ndarray, centres: np.ndarray, outputs: Sequence[str] = (LOGITS,)) -> dict[str, np.ndarray]:
        """The named outputs for one batch."""
        ...

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """The logits [B, N] for one batch (``infer(...)["logits"]``)."""
        ...

    def close(self) -> None:
        """Free what the engine holds; later calls raise ``ClosedError``. Closing twice is fine."""
        ...


class EngineBase:
    """``run`` and ``close`` bookkeeping on top of a backend's ``_infer``; backends subclass it."""

    path: Path
    card: ModelCard
    providers: list[str]
    precision: str
    outputs: tuple[str, ...] = (LOGITS,)
    _closed = False

    def _infer(self, image: np.ndarray, centres: np.ndarray, outputs: Sequence[str]) -> list[np.ndarray]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the backend's resources (called once, by ``close``)."""

    def infer(self, image: np.ndarray, centres: np.ndarray, outputs: Sequence[str] = (LOGITS,)) -> dict[str, np.ndarray]:
        if self._closed:
            raise ClosedError(f"model {self.path}: this engine is closed")
        unknown = [o for o in outputs if o not in self.outputs]
        if unknown:
            raise InputError(f"outputs={list(outputs)}", f"model {self.path} has no output {unknown[0]!r} "
                             f"(it has {list(self.outputs)})")
        return dict(zip(outputs, self._infer(image, centres, tuple(outputs))))

    def run(self, image: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return self.infer(image, centres, (LOGITS,))[LOGITS]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
