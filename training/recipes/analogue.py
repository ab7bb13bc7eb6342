"""Table 1's analogue in the paper's regime: a pretrained start that no evaluation person has seen,
enough steps, three seeds.

    python -m training.recipes.analogue pretrain --out runs/analogue              # the trunk (about 30 min)
    python -m training.recipes.analogue run --out runs/analogue --seeds 0 1 2     # the four variants
    python -m training.recipes.analogue run --out runs/analogue --variants backbone rtatl \\
        --label-fraction 0.25 --seeds 0 1                                         # a point of the label curve
    python -m training.recipes.analogue report                                    # table and plots

The paper starts ResNet-18 from ImageNet weights; none exist here. The stand-in is a trunk trained
on one identity half of the face corpus (``corpus.identity_half``: "pretrain"), supervised by the
blendshape teacher (the plain backbone variant on the default recipe's targets), saved as
``OUT/pretrain/trunk_resnet18.pth`` in torchvision's layout (``model.trunk_state_dict``) and loaded
strictly through ``model.pretrained`` (``model.load_pretrained``). The analogue's data come from
the other half only: its training and its validation people are both "analogue" people, so the
trunk never saw anyone the variants are judged on.

``run`` trains Backbone^T, +OFE, +RoII and RTATL (``--variants``) from that start at equal steps,
with the Table 1 analogue's settings (``table1``: the recipe's data without synthetic edits, the
shipped model's small graph, the paper's crop_prob 0.5), validating every ``--eval-every`` steps
(the curve says whether the backbone's AUC has levelled off). Each finished run writes one JSON
file to ``--results`` (default ``docs/experiments/analogue``) with variant, seed, steps, init (the
pretrained file's name), label_fraction, auc_mean, f1_mean (thresholds 0.5), f1_fitted_mean
(thresholds fitted on the validation people), per-contrast AUCs and the curve; a re-run skips
every run whose file is there (the work resumes from committed results) and resumes an interrupted
one from its last checkpoint under ``OUT``.

Caveat: the pretraining task shares its teacher with the analogue's labels, which ImageNet does
not share with BP4D: this start is closer to the target task than the paper's. The labels are a
blendshape teacher's, not FACS codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rtatl_sdk.errors import RTATLError

from . import default_model as recipe
from . import runs, table1
from .spec import Recipe

log = logging.getLogger("rtatl.analogue")
VARIANTS = ("backbone", "ofe", "roii", "rtatl")
TRUNK = "trunk_resnet18.pth"


def run_name(variant: str, seed: int, steps: int, label_fraction: float, init: str) -> str:
    """The results file's stem of one run (one place: the skip test and the writer use it)."""
    return (f"{variant}_s{seed}_steps{steps}" + (f"_labels{label_fraction:g}" if label_fraction < 1 else "")
            + ("" if init == "random" else "_pretrained"))


def _config(args, data: Path, variant: str, seed: int, steps: int, out: Path, pretrained: Path | None,
            label_fraction: float = 1.0):
    cfg = Recipe.from_options(args, crop_prob=None).train_config(data, steps, variant=variant)  # the paper's RoII setting
    cfg.run.seed, cfg.run.out = seed, out
    cfg.model.pretrained = pretrained
    cfg.data.label_fraction, cfg.data.subjects_seed = label_fraction, seed
    return cfg


def _segments(cfg, steps: int, every: int, data: Path, progress: bool) -> tuple[object, list[dict]]:
    """Train to ``steps`` in segments of ``every``, validating after each (mean prototype-AU AUC)."""
    def auc(model, stop, _ckpt) -> dict:
        point = {"step": stop, "auc_mean": recipe.validate(model, data)["student"]["auc_mean"]}
        log.info("%s step %d: validation AUC %s", cfg.run.out.name, stop, point["auc_mean"])
        return point

    return runs.train_in_segments(cfg, steps, every, auc, progress)


# ---------------------------------------------------------------- the pretrained trunk
def pretrain(args) -> Path:
    """Train the trunk on the "pretrain" half (teacher-supervised backbone) and save it; its
    provenance goes beside it and to ``--results``."""
    import torch

    from ..model import load_pretrained, trunk_state_dict

    out = args.out / "pretrain"
    weights = out / TRUNK
    if weights.is_file():
        log.info("pretrained trunk already there: %s", weights)
        return weights
    data = out / "data"
    summary = _data(args, data, "pretrain", out / "data_summary.json")
    earlier = args.results / "pretrain.json"  # a trunk trained before (its weights gone with runs/)
    earlier = json.loads(earlier.read_text()) if earlier.is_file() else None
    cfg = _config(args, data, "backbone", args.seed, args.steps, out / "train", None)
    t = time.time()
    model, curve = _segments(cfg, args.steps, args.eval_every, data, args.progress)
    state = trunk_state_dict(model.backbone)
    tmp = weights.with_suffix(".tmp")
    torch.save(state, tmp)
    from torchvision.models import resnet18

    load_pretrained(resnet18(weights=None), tmp)  # the file loads strictly, or nothing is saved
    tmp.replace(weights)
    prov = {"file": TRUNK, "half": "pretrain", "half_seed": args.half_seed, "task": "teacher-supervised (backbone "
            "variant on the default recipe's targets, BP4D's 12 AUs)", "steps": args.steps, "seed": args.seed,
            "identities": summary["train_identities"] + summary["val_identities"],
            "images": summary["train_images"] + summary["val_images"], "curve": curve,
            "seconds": round(time.time() - t), "tensors": len(state), "weights_sha256": _weights_hash(state)}
    if earlier is not None:
        # the results of runs from the earlier trunk stand only if this one is the same network
        same = earlier.get("curve") == curve and earlier.get("weights_sha256", prov["weights_sha256"]) == prov["weights_sha256"]
        prov["same_as_earlier"] = same
        # results files written before hashes were kept came from the first trunk: they stand only
        # while every retrained trunk has been the same network
        prov["hashless_results_valid"] = bool(same and earlier.get("hashless_results_valid", True))
        if not same:
            prov["earlier"] = {k: earlier.get(k) for k in ("curve", "weights_sha256")}
            log.warning("this trunk differs from the one in %s: runs made from that one are not comparable",
                        args.results / "pretrain.json")
    (out / "trunk_resnet18.json").write_text(json.dumps(prov, indent=1))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "pretrain.json").write_text(json.dumps(prov, indent=1))
    log.info("pretrained trunk: %s (%s)", weights, prov)
    return weights


def _weights_hash(state: dict) -> str:
    """sha256 over the trunk's tensor names and values (independent of the file's container)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _data(args, data: Path, half: str, summary_path: Path) -> dict:
    return recipe.data_once(Recipe.from_options(args, seed=0, edits=0), data, summary_path, half=half,
                            half_seed=args.half_seed)


def _trunk_hash(weights: Path) -> str:
    """The trunk's hash, after checking the file is a ResNet-18 trunk (``model.load_pretrained``: a
    file that is not is refused in one line, naming what differs)."""
    import torch
    from torchvision.models import resnet18

    from ..model import load_pretrained

    load_pretrained(resnet18(weights=None), weights)
    return _weights_hash(torch.load(weights, map_location="cpu", weights_only=True))


def _from_trunk(trunk: str, results: Path):
    """``runs.Results.done``'s validity test: a results file counts only if it was made from this
    trunk. A file without the trunk's hash (written before hashes were kept) came from the first
    trunk: it counts while ``pretrain.json`` has not recorded a different trunk since."""
    def valid(row: dict) -> bool:
        made_with = row.get("init_sha256")
        if made_with is None:
            prov = results / "pretrain.json"
            ok = (json.loads(prov.read_text()) if prov.is_file() else {}).get("hashless_results_valid", True)
            made_with = trunk if ok else "the first trunk"
        if made_with != trunk:
            log.warning("a run came from another trunk (%s): run again from this one", made_with[:12])
        return made_with == trunk

    return valid


# ---------------------------------------------------------------- the analogue runs
def run(args) -> list[dict]:
    weights = args.pretrained or args.out / "pretrain" / TRUNK
    if not weights.is_file():
        raise RTATLError(f"pretrained trunk {weights}: not there (run `python -m training.recipes.analogue pretrain "
                         f"--out {args.out}` first, or give --pretrained)")
    trunk = _trunk_hash(weights)  # a file that is not a trunk is refused before any work
    data = args.out / "data"
    _data(args, data, "analogue", args.out / "data_summary.json")
    results, from_trunk = runs.Results(args.results), _from_trunk(trunk, args.results)
    rows = []
    for seed in args.seeds:  # seed-major: every variant has a first seed before any has a second
        for variant in args.variants:
            name = run_name(variant, seed, args.steps, args.label_fraction, weights.name)
            if results.done(name, from_trunk):
                continue
            t = time.time()
            cfg = _config(args, data, variant, seed, args.steps, args.out / name, weights, args.label_fraction)
            model, curve = _segments(cfg, args.steps, args.eval_every, data, args.progress)
            card = recipe.validate(model, data, thresholds=[0.5] * len(cfg.data.aus))["student"]
            fitted = recipe.validate(model, data)["student"]  # thresholds fitted on the validation people
            row = {"variant": variant, "seed": seed, "steps": args.steps, "init": weights.name, "init_sha256": trunk,
                   "label_fraction": args.label_fraction, "auc_mean": fitted["auc_mean"],
                   "f1_mean": card["f1_vs_teacher_mean"], "f1_fitted_mean": fitted["f1_vs_teacher_mean"],
                   "f1_vs_teacher_mean": fitted["f1_vs_teacher_mean"], "f1_vs_targets_mean": fitted["f1_vs_targets_mean"],
                   "neutral_present_fitted": fitted["neutral_present"],
                   "auc": {k: c["auc"] for k, c in fitted["contrasts"].items()}, "curve": curve,
                   "half_seed": args.half_seed, "crop_prob": cfg.model.crop_prob, "seconds": round(time.time() - t)}
            results.write(name, row)
            rows.append(row)
            log.info("finished %s: %s", name, {k: row[k] for k in ("auc_mean", "f1_mean", "f1_fitted_mean")})
    return rows


def read_results(results: Path) -> list[dict]:
    """The finished runs made from the trunk ``pretrain.json`` describes (a table never mixes trunks)."""
    prov = results / "pretrain.json"
    prov = json.loads(prov.read_text()) if prov.is_file() else {}
    rows = runs.Results(results).rows(exclude=("pretrain.json",))
    current = [r for r in rows if r.get("init_sha256", "hashless") == prov.get("weights_sha256") or
               ("init_sha256" not in r and prov.get("hashless_results_valid", True))]
    if len(current) < len(rows):
        log.warning("%d results files came from another trunk and are left out", len(rows) - len(current))
    return current


def report(results: Path) -> str:
    """``table1.report``'s table and plots of the finished runs, plus each run's values per seed."""
    rows = read_results(results)
    if not rows:
        return f"no finished runs in {results}"
    text = table1.report(results, rows)
    lines = ["", "Per seed (AUC mean / F1 at 0.5 / F1 at fitted thresholds; AUC at each validation step):", "",
             "| run | seed | AUC | F1 (0.5) | F1 (fitted) | AUC curve |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (table1._name(r), r["seed"])):
        curve = ", ".join(f"{c['step']}: {c['auc_mean']:.3f}" for c in r.get("curve", []))
        lines.append(f"| {table1._name(r)} | {r['seed']} | {r['auc_mean']:.3f} | {r['f1_mean']:.3f} | "
                     f"{r['f1_fitted_mean']:.3f} | {curve} |")
    text += "\n" + "\n".join(lines)
    (results / "table1.md").write_text(text + "\n")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("pretrain", "run", "report"))
    table1.add_data_args(ap)
    ap.add_argument("--out", type=Path, default=Path("runs/analogue"))
    ap.add_argument("--results", type=Path, default=Path("docs/experiments/analogue"))
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: 600 to pretrain, 300 to run)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seed", type=int, default=0, help="the pretraining run's seed")
    ap.add_argument("--half-seed", type=int, default=0, help="the seed of the identity halves")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--label-fraction", type=float, default=1.0)
    ap.add_argument("--pretrained", type=Path, default=None, help="the trunk (default: OUT/pretrain/" + TRUNK + ")")
    args = ap.parse_args(argv)
    args.steps = args.steps or (600 if args.what == "pretrain" else 300)
    if args.steps < 1 or args.eval_every < 1:
        ap.error("--steps and --eval-every must be at least 1")
    if not 0.0 < args.label_fraction <= 1.0:
        ap.error(f"--label-fraction {args.label_fraction}: must be in (0, 1]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.what == "pretrain":
            pretrain(args)
        elif args.what == "run":
            run(args)
        print(report(args.results))
    except RTATLError as exc:
        print(f"analogue: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
