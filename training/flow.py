"""TV-L1 optical flow targets (paper sec. 3.4): OpenCV's DualTVL1 (opencv-contrib)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlowParams:
    """DualTVL1 parameters; the defaults are OpenCV's. ``scale`` < 1 computes the flow on a
    smaller image and resizes it back (values rescaled), which is much cheaper."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale: float = 1.0

    def __post_init__(self):
        """Every parameter's range, checked once: 0 warps, scales or a 0 image scale give inf or
        all-zero flow targets that train without a sign of trouble."""
        from rtatl_sdk.errors import InputError

        for name in ("scales", "warps", "inner_iterations", "outer_iterations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"flow {name.replace('_', '-')} {v!r}", "must be a whole number, 1 or more")
        for name in ("tau", "lambda_", "theta", "epsilon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise InputError(f"flow {name.rstrip('_')} {v!r}", "must be a finite number above 0")
        if not (isinstance(self.scale, (int, float)) and np.isfinite(self.scale) and 0.05 <= self.scale <= 1.0):
            raise InputError(f"--flow-scale {self.scale!r}", "must lie in [0.05, 1] (a fraction of the 200-px face)")


def tvl1_flow(prev_bgr: np.ndarray, next_bgr: np.ndarray, params: FlowParams = FlowParams()) -> np.ndarray:
    """Flow from ``prev`` to ``next`` as float32 ``(2, H, W)`` in pixels of the input size."""
    import cv2

    h, w = prev_bgr.shape[:2]
    a = cv2.cvtColor(prev_bgr, cv2.COLOR_BGR2GRAY)
    b = cv2.cvtColor(next_bgr, cv2.COLOR_BGR2GRAY)
    if params.scale != 1.0:
        size = (max(8, round(w * params.scale)), max(8, round(h * params.scale)))
        a, b = cv2.resize(a, size, interpolation=cv2.INTER_AREA), cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    tv = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=params.tau, lambda_=params.lambda_, theta=params.theta, nscales=params.scales, warps=params.warps,
        epsilon=params.epsilon, innnerIterations=params.inner_iterations, outerIterations=params.outer_iterations,
    )
    flow = tv.calc(a, b, None)
    if params.scale != 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / params.scale
    return np.ascontiguousarray(flow.transpose(2, 0, 1).astype(np.float32))


def flip_flow(flow: np.ndarray) -> np.ndarray:
    """Flow of the horizontally flipped image pair: mirrored, x component negated."""
    out = flow[..., ::-1].copy()
    out[0] = -out[0]
    return out
