"""``rtatl-figures``: the paper's qualitative figures from a checkpoint and a cache, as PNGs.

    rtatl-figures --ckpt runs/bp4d_fold1/last.ckpt --cache cache/bp4d --out figures/ [--frames 8]

- ``flow.png`` (Figure 5): per cached frame with a flow target, the aligned face, its TV-L1
  flow (the target) and the flow the OFE head predicts from the single image, both coloured by
  direction (hue) and magnitude (brightness, scaled to the largest target of the sheet);
- ``inpainting.png`` (Figure 6): per frame, one AU's two RoIs as cut from the face, as whitened
  and as G fills them back in from the transformer's RoI features;
- ``au_indicators.png`` (Figure 7): the cosine similarity of the learned AU indicators.

Frames are the cache's first ``--frames`` frames of the given subjects (default: the
checkpoint's test subjects), centre-cropped as in evaluation. A figure whose head the
checkpoint's variant lacks (no OFE, no RoII) is skipped with a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import preprocess
from rtatl_sdk.contract.au import au_label
from rtatl_sdk.errors import RTATLError

TILE = 192


def _to_bgr(image_chw: np.ndarray) -> np.ndarray:
    """A normalised RGB (3, H, W) array back to a displayable BGR uint8 image."""
    rgb = image_chw.transpose(1, 2, 0) * np.array(preprocess.STD) + np.array(preprocess.MEAN)
    return np.clip(rgb[:, :, ::-1] * 255, 0, 255).astype(np.uint8)


def flow_colour(flow: np.ndarray, scale: float) -> np.ndarray:
    """(2, H, W) flow -> BGR: hue = direction, brightness = magnitude / ``scale``."""
    import cv2

    mag, ang = cv2.cartToPolar(flow[0].astype(np.float32), flow[1].astype(np.float32), angleInDegrees=True)
    hsv = np.zeros((*mag.shape, 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / max(scale, 1e-6) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _tile(img: np.ndarray, size: int = TILE) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST if img.shape[0] < size else cv2.INTER_AREA)


def _sheet(rows: list[list[np.ndarray]], titles: list[str]) -> np.ndarray:
    import cv2

    head = np.full((28, TILE * len(titles), 3), 255, np.uint8)
    for j, t in enumerate(titles):
        cv2.putText(head, t, (j * TILE + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([head] + [np.concatenate([_tile(x) for x in r], 1) for r in rows], 0)


def flow_figure(model, batch) -> np.ndarray | None:
    import torch
    import torch.nn.functional as F

    has = batch["has_flow"]
    if not model.use_ofe or not bool(has.any()):
        return None
    with torch.no_grad():
        pred = model.flow_head(model.backbone(batch["image"], batch["centres"]).global_maps)
        target = F.adaptive_avg_pool2d(batch["flow"], pred.shape[-2:])
    scale = float(torch.linalg.vector_norm(target[has], dim=1).amax())
    rows = [[_to_bgr(batch["image"][i].numpy()), flow_colour(target[i].numpy(), scale), flow_colour(pred[i].numpy(), scale)]
            for i in np.flatnonzero(has.numpy())]
    return _sheet(rows, ["face", "TV-L1 flow (target)", "predicted flow"])


def inpainting_figure(model, batch, aus) -> np.ndarray | None:
    import torch

    from .model.roii import crop_patches

    if not model.use_roii:
        return None
    b = batch["image"].shape[0]
    k = torch.arange(b) % len(aus)  # a different AU per row
    idx = torch.arange(b)
    kc = torch.stack([batch["centres"][idx, 2 * k], batch["centres"][idx, 2 * k + 1]], 1)
    cropped = model.whiten(batch["image"], kc)
    with torch.no_grad():
        tokens = model.backbone(cropped, batch["centres"]).roi_tokens
        fake = model.generator(torch.stack([tokens[idx, 2 * k], tokens[idx, 2 * k + 1]], 1).reshape(2 * b, -1))
    real, holes = crop_patches(batch["image"], kc), crop_patches(cropped, kc)
    rows = []
    for i in range(b):
        pair = [_to_bgr(t[j].numpy()) for t in (real, holes, fake) for j in (2 * i, 2 * i + 1)]
        rows.append([_to_bgr(cropped[i].numpy()), *pair])
    sheet = _sheet(rows, ["whitened face", "RoI 1", "RoI 2", "RoI 1 cropped", "RoI 2 cropped", "RoI 1 by G", "RoI 2 by G"])
    import cv2

    for i, a in enumerate(int(x) for x in k):
        cv2.putText(sheet, au_label(aus[a]), (6, 28 + i * TILE + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2, cv2.LINE_AA)
    return sheet


def indicator_figure(model, aus, cell: int = 40) -> np.ndarray:
    """Cosine similarity of the AU indicators, [-1, 1] coloured blue-white-red, values written in."""
    import cv2
    import torch

    ind = model.backbone.transformer.au_indicators.detach()
    sim = torch.nn.functional.cosine_similarity(ind[:, None], ind[None], dim=-1).numpy()
    n = len(aus)
    img = np.full((cell * (n + 1), cell * (n + 1), 3), 255, np.uint8)
    for i in range(n):
        for j in range(n):
            v = float(sim[i, j])
            fade = int(255 * (1 - min(abs(v), 1.0)))
            colour = (fade, fade, 255) if v >= 0 else (255, fade, fade)  # BGR: white to red (+), to blue (-)
            y, x = cell * (i + 1), cell * (j + 1)
            img[y:y + cell, x:x + cell] = colour
            cv2.putText(img, f"{v:.2f}", (x + 3, y + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        for pos in ((4, cell * (i + 1) + cell // 2 + 4), (cell * (i + 1) + 4, cell // 2 + 4)):
            cv2.putText(img, au_label(aus[i])[2:], pos, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_figures(ckpt: Path, cache: Path, out: Path, frames: int = 8, subjects=None) -> dict[str, Path | None]:
    """Write the three PNGs; returns name -> path (None where the variant lacks the head)."""
    import cv2

    from .checkpoint import model_from_checkpoint
    from .data.dataset import AUDataset, collate

    model, state = model_from_checkpoint(ckpt)
    aus = tuple(state["aus"])
    ds = AUDataset(cache, subjects or state.get("test_subjects"), train=False, labelled=True, aus=aus)
    batch = collate([ds[i] for i in range(min(frames, len(ds)))])
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, img in (("flow.png", flow_figure(model, batch)), ("inpainting.png", inpainting_figure(model, batch, aus)),
                      ("au_indicators.png", indicator_figure(model, aus))):
        if img is None:
            made[name] = None
            continue
        path = out / name
        if not cv2.imwrite(str(path), img):
            raise RTATLError(f"{path}: could not be written")
        made[name] = path
    return made


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--subjects", nargs="*", default=None)
    args = ap.parse_args(argv)
    if args.frames < 1:
        print("rtatl-figures: --frames must be 1 or more", file=sys.stderr)
        return 2
    try:
        made = write_figures(args.ckpt, args.cache, args.out, args.frames, args.subjects)
    except RTATLError as exc:
        print(f"rtatl-figures: error: {exc}", file=sys.stderr)
        return 2
    for name, path in made.items():
        print(f"{name}: {path}" if path else f"{name}: skipped (the checkpoint's variant has no such head)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
