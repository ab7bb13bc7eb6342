"""Small helpers shared by tests (one module: test files import nothing from each other)."""

import time
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import geometry as g

REPO = Path(__file__).resolve().parents[1]


def wait_for(cond, proc, timeout: float = 300) -> bool:
    """Poll ``cond()`` until true; False if ``proc`` exits first or ``timeout`` passes."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def mean_face(rng=None, jitter=0.0):
    """A plausible upright 68-point face on the 192 crop built from the template's five points."""
    t = g.TEMPLATE_5 - g.CENTRE_CROP_OFFSET
    eye_r, eye_l, nose, m_r, m_l = t
    iod = eye_l[0] - eye_r[0]
    pts = np.zeros((68, 2))
    pts[0:17] = np.stack([np.linspace(eye_r[0] - 0.55 * iod, eye_l[0] + 0.55 * iod, 17),
                          eye_r[1] + iod * (0.2 + 1.1 * np.sin(np.linspace(0, np.pi, 17)))], 1)
    for k, side in ((17, eye_r), (22, eye_l)):
        xs = np.linspace(-0.35, 0.35, 5) * iod + side[0]
        pts[k:k + 5] = np.stack([xs, np.full(5, side[1] - 0.35 * iod)], 1)
    pts[27:31] = np.stack([np.full(4, nose[0]), np.linspace(eye_r[1], nose[1], 4)], 1)
    pts[31:36] = np.stack([nose[0] + np.linspace(-0.2, 0.2, 5) * iod, np.full(5, nose[1] + 0.08 * iod)], 1)
    for k, c in ((36, eye_r), (42, eye_l)):
        ang = np.linspace(np.pi, -np.pi, 7)[:6]
        pts[k:k + 6] = c + np.stack([0.2 * iod * np.cos(ang), 0.07 * iod * np.sin(ang)], 1)
    mc = (m_r + m_l) / 2
    ang = np.linspace(np.pi, -np.pi, 13)[:12]
    pts[48:60] = mc + np.stack([(m_l[0] - m_r[0]) / 2 * np.cos(ang), 0.12 * iod * np.sin(-ang)], 1)
    ang = np.linspace(np.pi, -np.pi, 9)[:8]
    pts[60:68] = mc + np.stack([0.35 * iod * np.cos(ang), 0.04 * iod * np.sin(-ang)], 1)
    if rng is not None:
        pts += rng.normal(0, jitter, pts.shape)
    return pts


def pan_clip(image: Path, path: Path, frames: int = 40) -> Path:
    """A slow pan and zoom over a still (``multi_face.jpg``: five people) written as an mp4: a
    clip with several people for tracking tests and benchmarks."""
    import cv2

    img = cv2.imread(str(image))
    h, w = img.shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 427))
    for i in range(frames):
        t = i / (frames - 1)
        cw, ch = int(w * (1 - 0.1 * t)), int(h * (1 - 0.1 * t))
        x, y = int((w - cw) * t), int((h - ch) * 0.5 * t)
        vw.write(cv2.resize(img[y:y + ch, x:x + cw], (640, 427), interpolation=cv2.INTER_AREA))
    vw.release()
    return path


def onnx_fingerprint(path: Path) -> tuple[str, float]:
    """An exported graph as (sha256 of everything but the weights' values: nodes, their names,
    inputs, outputs, attributes, opset, the initialisers' names, types and shapes; the sum of the
    absolute weights). The first must match exactly; the second, drawn by a seeded initialisation,
    may move in its last bits between CPU kinds, so it is compared within a tolerance."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    total = 0.0
    for t in m.graph.initializer:
        total += float(np.abs(numpy_helper.to_array(t).astype(np.float64)).sum())
        t.ClearField("raw_data")
        del t.float_data[:], t.int64_data[:], t.int32_data[:]
    m.ClearField("producer_version")
    return hashlib.sha256(m.SerializeToString(deterministic=True)).hexdigest(), total
