"""``rtatl-stats``: parameters and FLOPs of every part of the RTATL graph of a config.

    rtatl-stats --config training/configs/bp4d.yaml [model.roi_cells=8 ...] [--json stats.json]

Parts: the inference graph (ResNet-18, top-down fusion, per-AU RoI modules, AU-relation
transformer, local and global classifiers) and each auxiliary head of the training graph
(G, D, C, flow head). FLOPs per image at the 192x192 input, counted by
``torch.utils.flop_counter`` as 2 x multiply-accumulates of convolutions and matrix products
(the convention under which the paper's inference graph is 5.57 GFLOPs); RoI-Align,
normalisations and activations are not counted. Per image, the heads run as in a training
step: G on the two RoI tokens of the cropped AU, D on two real and two generated patches,
C on two real and two generated patches, the flow head on the ResNet output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Paper (sec. 4.2 / Table 4): inference graph 19.12 M parameters and 5.57 GFLOPs; the
#: training graph with the auxiliary modules 54.62 M parameters.
PAPER = {"inference_params": 19.12e6, "inference_gflops": 5.57, "training_params": 54.62e6}


def _flops(fn) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel is not counted
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return counter.get_total_flops()


def part_stats(model) -> list[dict]:
    """One row per part: name, parameters, GFLOPs per image (eval mode, batch 1)."""
    import torch

    from rtatl_sdk.contract import geometry

    bb = model.backbone.eval()
    n = len(model.aus)
    image = torch.randn(1, 3, geometry.CROP_SIZE, geometry.CROP_SIZE)
    centres = torch.full((1, 2 * n, 2), geometry.CROP_SIZE / 2.0)
    parts = {"ResNet-18 (stem + 4 stages)": [bb.stem, bb.layers], "top-down fusion": [bb.fusion],
             "per-AU RoI modules": [bb.au_convs], f"AU-relation {bb.relation}": [bb.transformer],
             "local + global classifiers": [bb.global_fc]}
    counts = {name: sum(p.numel() for m in mods for p in m.parameters()) for name, mods in parts.items()}
    counts["local + global classifiers"] += bb.local_fc.numel() + bb.local_bias.numel()
    # FLOPs of the inference graph by stage; the classifiers are what the whole graph adds
    def resnet():
        y, out = bb.stem(bb.resized(image)), []  # the trunk's input (resized in a lighter graph)
        for layer in bb.layers:
            y = layer(y)
            out.append(y)
        return out

    fmaps = resnet()
    total = _flops(lambda: bb(image, centres))
    stem_layers = _flops(resnet)
    fusion = _flops(lambda: bb.fusion(fmaps))
    rois = torch.randn(1, 2 * n, bb.d, bb.roi_cells, bb.roi_cells)
    au = _flops(lambda: bb.au_convs(rois))
    tr = _flops(lambda: bb.transformer(torch.randn(1, 2 * n, bb.d)))
    flops = {"ResNet-18 (stem + 4 stages)": stem_layers, "top-down fusion": fusion, "per-AU RoI modules": au,
             f"AU-relation {bb.relation}": tr}
    flops["local + global classifiers"] = total - sum(flops.values())
    rows = [{"part": k, "params": counts[k], "gflops": flops[k] / 1e9, "graph": "inference"} for k in parts]
    heads = []
    if model.use_roii:
        patches = torch.randn(4, 3, geometry.ROI_SIZE, geometry.ROI_SIZE)
        heads += [("G: RoI generator", model.generator, lambda: model.generator(torch.randn(2, bb.d))),
                  ("D: patch discriminator", model.discriminator, lambda: model.discriminator(patches)),
                  ("C: patch AU classifier", model.classifier, lambda: model.classifier(patches))]
    if model.use_ofe:
        heads.append(("flow head", model.flow_head, lambda: model.flow_head(fmaps[-1])))
    if model.ssl:
        heads.append((f"{model.ssl} head", model.ssl_head, lambda: model.ssl_head(fmaps[-1].mean(dim=(2, 3)))))
    for name, mod, call in heads:
        mod.eval()
        rows.append({"part": name, "params": sum(p.numel() for p in mod.parameters()), "gflops": _flops(call) / 1e9,
                     "graph": "training only"})
    return rows


def summary(rows: list[dict]) -> dict:
    inf = [r for r in rows if r["graph"] == "inference"]
    return {"inference_params": sum(r["params"] for r in inf), "inference_gflops": sum(r["gflops"] for r in inf),
            "training_params": sum(r["params"] for r in rows)}


def main(argv=None) -> int:
    from rtatl_sdk.contract.au import AU_SETS
    from rtatl_sdk.errors import RTATLError

    from .config import load_config
    from .model import RTATL

    ap = argparse.ArgumentParser(prog="rtatl-stats", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("overrides", nargs="*", help="section.key=value")
    ap.add_argument("--json", type=Path, help="also write the rows and totals here")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except RTATLError as exc:
        print(f"rtatl-stats: {exc}", file=sys.stderr)
        return 2
    model = RTATL(cfg.model, tuple(cfg.data.aus or AU_SETS[cfg.data.dataset]), init=False)
    rows = part_stats(model)
    tot = summary(rows)
    print("| part | graph | parameters (M) | GFLOPs per image |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['part']} | {r['graph']} | {r['params'] / 1e6:.2f} | {r['gflops']:.3f} |")
    print(f"| **inference graph** | | **{tot['inference_params'] / 1e6:.2f}** (paper 19.12) | "
          f"**{tot['inference_gflops']:.2f}** (paper 5.57) |")
    print(f"| **training graph** | | **{tot['training_params'] / 1e6:.2f}** (paper 54.62) | |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": tot, "paper": PAPER}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
