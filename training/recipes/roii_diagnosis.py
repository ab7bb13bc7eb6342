"""Why RoI inpainting costs accuracy in the Table 1 analogue: short controlled runs, one factor each.

    python -m training.recipes.roii_diagnosis --out runs/diagnosis --steps 100 --seeds 0 --clip-frames 120
    python -m training.recipes.roii_diagnosis --out runs/diagnosis --report

Every factor trains with the Table 1 analogue's data and settings (``table1``: the default-model
recipe's data, identity-disjoint validation people, teacher labels), the same seed and steps, and
differs from ``roii`` in one setting:

- ``backbone``: no auxiliary task (the reference);
- ``roii``: RoI inpainting as the paper has it (crop_prob 0.5: half of the labelled images whitened);
- ``roii_crop0``: only the unlabelled images whitened (crop_prob 0);
- ``roii_detach``: G reads the RoI features detached from the backbone (L_G reaches only G);
- ``roii_lambda1_0``: no adversarial term in L_G (lambda1 = 0, Eq. 7);
- ``roii_warmup``: the auxiliary losses ramp up linearly over the first half of the steps;
- ``roii_bn_intact``: the ``roii`` run's weights with its BatchNorm statistics re-estimated on
  intact training faces (no training of its own).

Each is scored on the validation people at the card's thresholds (0.5: what an exported card of
the run carries, since the run fits none), at thresholds fitted on the validation people (the
recipe's rule), and by the mean prototype-AU AUC (no threshold); and the norms of each loss
term's gradient at the trunk and at the RoI features are measured on three training batches at
initialisation and after training (``training.diagnosis.gradient_norms``). One JSON file per
finished factor and seed goes to ``--results`` (default ``docs/experiments/diagnosis``): a re-run
skips what is there and redoes only what is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from rtatl_sdk.errors import RTATLError

from . import default_model as recipe
from . import runs, table1

log = logging.getLogger("rtatl.diagnosis")

#: factor -> (variant, model settings that differ from the variant's defaults)
FACTORS: Mapping[str, tuple[str, Mapping]] = MappingProxyType({
    "backbone": ("backbone", MappingProxyType({})),
    "roii": ("roii", MappingProxyType({})),
    "roii_crop0": ("roii", MappingProxyType({"crop_prob": 0.0})),
    "roii_detach": ("roii", MappingProxyType({"roii_detach": True})),
    "roii_lambda1_0": ("roii", MappingProxyType({"lambda1": 0.0})),
    "roii_warmup": ("roii", MappingProxyType({"aux_warmup": "half"})),
})
#: post-hoc factors: (trained factor whose checkpoint they start from, what is done to it)
POST_HOC = MappingProxyType({"roii_bn_intact": "roii"})
GRAD_BATCHES = 3


def _config(args, data: Path, factor: str, seed: int):
    variant, over = FACTORS[factor]
    over = {k: (args.steps // 2 if v == "half" else v) for k, v in over.items()}
    cfg = table1.analogue_recipe(args).train_config(data, args.steps, variant=variant, **over)
    cfg.run.seed = seed
    cfg.run.out = args.out / f"{factor}_s{seed}"
    return cfg


def _batches(cfg, aus, n: int, seed: int, intact_only: bool = False) -> list[dict]:
    """``n`` training batches as the trainer draws them (labelled + unlabelled, augmented); with
    ``intact_only`` labelled faces alone (what BatchNorm re-estimation reads)."""
    from ..data.dataset import AUDataset, Augment, collate
    from ..train import _merge

    d = cfg.data
    augment = Augment(colour_jitter=d.colour_jitter, greyscale=d.greyscale, blur=d.blur, jpeg=d.jpeg, scale=d.scale)
    lab = AUDataset(d.cache, None, train=True, labelled=True, seed=seed, aus=aus, augment=augment)
    unl = None
    if not intact_only and d.unlabelled_cache is not None:
        unl = AUDataset(d.unlabelled_cache, None, train=True, labelled=False, seed=seed + 1, aus=None, augment=augment)
        unl.aus, unl.cols = tuple(aus), list(range(len(aus)))
    rng = np.random.default_rng([seed, 12345])
    out = []
    for _ in range(n):
        b = collate([lab[int(i)] for i in rng.choice(len(lab), cfg.optim.batch_size, replace=False)])
        if unl is not None:
            b = _merge(b, collate([unl[int(i)] for i in rng.choice(len(unl), cfg.optim.unlabelled_batch_size, replace=False)]))
        out.append(b)
    return out


def _grad_table(model, batches, seed: int) -> dict:
    """Mean over ``batches`` of each term's gradient norms (``training.diagnosis.gradient_norms``)."""
    import torch

    from ..diagnosis import gradient_norms

    acc: dict[str, dict[str, list[float]]] = {}
    for i, b in enumerate(batches):
        g = gradient_norms(model, b, torch.Generator().manual_seed(seed * 7_919 + i))
        for term, vals in g.items():
            for k, v in vals.items():
                acc.setdefault(term, {}).setdefault(k, []).append(v)
    return {t: {k: round(float(np.mean(v)), 6) for k, v in vals.items()} for t, vals in acc.items()}


def _scores(model, data: Path) -> dict:
    from ..data.dataset import CacheIndex

    card = recipe.validate(model, data, thresholds=[0.5] * len(CacheIndex(data / "val").aus))["student"]
    fitted = recipe.validate(model, data)["student"]
    return {"f1_card_mean": card["f1_vs_teacher_mean"], "f1_fitted_mean": fitted["f1_vs_teacher_mean"],
            "auc_mean": fitted["auc_mean"], "neutral_present_card": card["neutral_present"],
            "neutral_present_fitted": fitted["neutral_present"],
            "auc": {k: c["auc"] for k, c in fitted["contrasts"].items()}}


def run_factor(args, data: Path, factor: str, seed: int) -> dict:
    import torch

    from ..checkpoint import model_from_checkpoint
    from ..model import RTATL
    from ..train import train

    t = time.time()
    row = {"factor": factor, "seed": seed, "steps": args.steps, "init": "random", "label_fraction": 1.0}
    if factor in POST_HOC:
        from ..diagnosis import reestimate_batchnorm

        src = _config(args, data, POST_HOC[factor], seed)
        ckpt = src.run.out / "last.ckpt"
        if not ckpt.is_file():
            raise RTATLError(f"{factor}: needs the finished run of {POST_HOC[factor]} at {ckpt}")
        model, state = model_from_checkpoint(ckpt)
        row["variant"] = src.model.variant
        row["bn_images"] = reestimate_batchnorm(model, _batches(src, tuple(state["aus"]), 20, seed, intact_only=True))
        row.update(_scores(model.eval(), data))
    else:
        cfg = _config(args, data, factor, seed)
        row["variant"] = cfg.model.variant
        row["model_settings"] = {k: v for k, v in cfg.model.model_dump(mode="json").items()
                                 if k in FACTORS[factor][1] or k == "crop_prob"}
        aus = tuple(cfg.data.aus)
        torch.manual_seed(seed)
        init = RTATL(cfg.model, aus)
        grads_init = _grad_table(init, _batches(cfg, aus, GRAD_BATCHES, seed), seed)
        del init
        res = train(cfg, progress=args.progress)
        model, _ = model_from_checkpoint(Path(res["checkpoint"]))
        row.update(_scores(model, data))
        row["grad_norms_init"] = grads_init
        row["grad_norms_end"] = _grad_table(model, _batches(cfg, aus, GRAD_BATCHES, seed), seed)
    row["seconds"] = round(time.time() - t)
    return row


def report(rows: list[dict]) -> str:
    """Markdown: one line per factor (mean over its seeds) with scores and end-of-run gradient norms."""
    head = ("| factor | seeds | F1 at card thresholds (0.5) | F1 at fitted thresholds | AUC mean | |grad| trunk: sup / G terms "
            "| |grad| RoI: sup / G terms | cos(sup, rec) trunk |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for f in dict.fromkeys(r["factor"] for r in rows):
        rs = [r for r in rows if r["factor"] == f]

        def m(key, rs=rs):
            v = [r[key] for r in rs if r.get(key) is not None]
            return f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "") if v else "n/a"

        def g(part, rs=rs):
            vals = [r.get("grad_norms_end") for r in rs if r.get("grad_norms_end")]
            if not vals:
                return "(trained weights of roii)"
            sup = np.mean([v["sup"][part] for v in vals])
            aux = np.mean([sum(v[k][part] for k in ("adv_g", "rec", "cls_g") if k in v) for v in vals])
            return f"{sup:.3g} / {aux:.3g}"

        cos = [r["grad_norms_end"]["rec"]["cos_sup_trunk"] for r in rs if r.get("grad_norms_end", {}).get("rec")]
        lines.append(f"| {f} | {len(rs)} | {m('f1_card_mean')} | {m('f1_fitted_mean')} | {m('auc_mean')} | {g('trunk')} "
                     f"| {g('roi')} | {f'{np.mean(cos):.3f}' if cos else 'n/a'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    table1.add_data_args(ap)
    ap.add_argument("--out", type=Path, default=Path("runs/diagnosis"))
    ap.add_argument("--data", type=Path, default=None, help="an existing recipe data folder (default: OUT/data, built once)")
    ap.add_argument("--results", type=Path, default=Path("docs/experiments/diagnosis"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--factors", nargs="+", default=[*FACTORS, *POST_HOC], choices=[*FACTORS, *POST_HOC])
    ap.add_argument("--report", action="store_true", help="only print the table of the finished factors")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results = runs.Results(args.results)
    try:
        if not args.report:
            data = args.data or args.out / "data"
            if args.data is None:
                recipe.data_once(table1.analogue_recipe(args), data, args.out / "data_summary.json")
            for seed in args.seeds:
                for factor in args.factors:
                    name = f"{factor}_s{seed}_steps{args.steps}"
                    if results.done(name):
                        continue
                    row = run_factor(args, data, factor, seed)
                    results.write(name, row)
                    log.info("finished %s seed %d: %s", factor, seed, {k: row.get(k) for k in
                                                                       ("f1_card_mean", "f1_fitted_mean", "auc_mean")})
    except RTATLError as exc:
        print(f"roii_diagnosis: error: {exc}", file=sys.stderr)
        return 2
    rows = results.rows(f"*_steps{args.steps}")
    if rows:
        print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
