"""Shared helpers of the benchmark scripts: timing, machine header, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

MEDIA = Path(os.environ.get("RTATL_MEDIA", Path(__file__).resolve().parents[1] / "media"))


def header() -> dict:
    import cv2
    import numpy
    import onnxruntime

    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__, "opencv": cv2.__version__,
            "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    try:
        import mediapipe

        info["mediapipe"] = mediapipe.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        info["cpu_kind"] = cpu_kind(text)
    except (OSError, StopIteration):
        pass
    return info


def cpu_kind(cpuinfo: str) -> str:
    """The kind of x86 CPU as the README's speed figures name it, from /proc/cpuinfo's flags: the
    int8 AU model runs on VNNI where the CPU has it, which moves every absolute time."""
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    if "avx512_vnni" in flags:
        return "AVX-512/VNNI"
    if "avx512f" in flags:
        return "AVX-512 (no VNNI)"
    if "avx2" in flags:
        return "AVX2 with AVX-VNNI" if "avx_vnni" in flags else "AVX2"
    return "other"


def timeit(fn, repeats: int = 20, warmup: int = 2) -> dict:
    """Median and spread (p10, p90) of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    return {"median_ms": statistics.median(ts), "p10_ms": ts[len(ts) // 10], "p90_ms": ts[(9 * len(ts)) // 10],
            "repeats": repeats}


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, payload: dict, out_dir: Path = Path("out/bench")) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    p = out_dir / f"{name}.json"
    p.write_text(json.dumps(payload, indent=1))
    return p


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
