"""Face boxes compared: intersection over union and greedy one-to-one matching (the face
detector's tracks, the landmark tracker and the track ids all match boxes this way)."""

from __future__ import annotations

from collections.abc import Sequence


def _xywh(b) -> tuple[float, float, float, float]:
    return (b.x, b.y, b.w, b.h) if hasattr(b, "w") else (b[0], b[1], b[2], b[3])


def iou(a, b) -> float:
    """Intersection over union of two boxes (``Box`` or (x, y, w, h))."""
    ax, ay, aw, ah = _xywh(a)
    bx, by, bw, bh = _xywh(b)
    x1, y1 = max(ax, bx), max(ay, by)
    x2, y2 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (aw * ah + bw * bh - inter + 1e-9)


def greedy_match(a: Sequence, b: Sequence, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (i, j) of ``a[i]`` and ``b[j]``, best overlap first, each box in at most one pair,
    none under ``min_iou`` (ties: higher indices first, as ``sorted(..., reverse=True)`` has them)."""
    pairs = sorted(((iou(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)), reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for score, i, j in pairs:
        if score < min_iou:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j))
    return out
