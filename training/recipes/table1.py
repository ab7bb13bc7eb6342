"""Table 1's analogue on CPU: the paper's variants trained at equal steps and several seeds on
the face corpus, with the blendshape teacher's labels as ground truth, judged on people no
run trained on.

    python -m training.recipes.table1 --out runs/table1 [--steps 150] [--seeds 0 1]
        [--variants backbone ofe roii rtatl rotation] [--faces ../shared/faces]
    python -m training.recipes.table1 --out runs/table1 --variants backbone rtatl --label-fraction 0.1

Data are the default-model recipe's (``default_model.build_data``: identity-disjoint split of
``--faces``, teacher soft targets raised by emotion priors, the project's clip for flow and
unlabelled frames), without its synthetic AU edits; every run uses the recipe's training
settings and the shipped model's small graph, and differs only in ``model.variant`` and
``run.seed``. Each finished run writes its row to ``OUT/results/NAME.json`` (``runs.Results``)
and the list of all to ``OUT/results.json``; running the command again skips finished runs and
resumes an interrupted one from its last checkpoint. ``--report``
writes the table (mean and standard deviation over seeds) to ``OUT/table1.md`` and a plot to
``OUT/table1.png``, and, for variants run at several ``--label-fraction`` values, the
limited-label curve to ``OUT/label_curve.png``.

Caveat: the labels are a blendshape teacher's, not FACS codes; the numbers compare the
variants with each other on this data, and say nothing of BP4D.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from rtatl_sdk.errors import RTATLError

from . import default_model as recipe
from . import runs
from .spec import Recipe

log = logging.getLogger("rtatl.table1")
VARIANTS = ("backbone", "ofe", "roii", "rtatl", "rotation")
MEASURES = ("f1_vs_teacher_mean", "f1_vs_targets_mean", "auc_mean")


def run_one(args, data: Path, variant: str, seed: int) -> dict:
    """One variant and seed: train (resuming its folder), then judge it on the validation people
    (thresholds fitted there, as the recipe does, for the F1 columns; AUCs need none)."""
    from ..checkpoint import model_from_checkpoint
    from ..train import train

    cfg = analogue_recipe(args).train_config(data, args.steps, variant=variant)
    frac = args.label_fraction
    cfg.run.seed = seed
    cfg.run.out = args.out / (f"{variant}_s{seed}" + (f"_labels{frac:g}" if frac < 1 else "")
                              + ("_roilinear" if args.roi_vector == "linear" else ""))
    cfg.data.label_fraction, cfg.data.subjects_seed = frac, seed
    t = time.time()
    res = train(cfg, progress=args.progress)
    model, _ = model_from_checkpoint(Path(res["checkpoint"]))
    student = recipe.validate(model, data)["student"]
    row = {"variant": variant, "seed": seed, "steps": args.steps, "label_fraction": frac, "seconds": round(time.time() - t),
           "roi_vector": args.roi_vector}
    row.update({m: student.get(m) for m in MEASURES})
    row["auc"] = {k: c["auc"] for k, c in student["contrasts"].items()}
    return row


def _name(row: dict) -> str:
    frac = row.get("label_fraction", 1.0)
    return (row["variant"] + (f", {frac:.0%} labels" if frac < 1 else "")
            + (", linear RoI vectors" if row.get("roi_vector", "mean") == "linear" else ""))


def _summary(rows: list[dict]) -> dict:
    """{measure: (mean, population std)} over ``rows`` (the seeds of one setting)."""
    vals = {m: [r[m] for r in rows if r[m] is not None] for m in MEASURES}
    return {m: (float(np.mean(x)), float(np.std(x))) if x else (float("nan"), 0.0) for m, x in vals.items()}


def label_curve(rows: list[dict]) -> dict:
    """Variants run at two or more label fractions: {variant: {fraction: {measure: (mean, std), "seeds": n}}}."""
    curve = {}
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == v]
        fracs = sorted({r.get("label_fraction", 1.0) for r in rs})
        if len(fracs) < 2:
            continue
        curve[v] = {}
        for f in fracs:
            at = [r for r in rs if r.get("label_fraction", 1.0) == f]
            curve[v][f] = {**_summary(at), "seeds": len(at)}
    return curve


def report(out: Path, rows: list[dict]) -> str:
    """The table (mean +- std over seeds per variant; population std, so with two seeds it is half their
    difference) as markdown, a bar plot of the full-label runs with error bars, and the limited-label curve."""
    lines = ["| variant | seeds | " + " | ".join(MEASURES) + " |", "|---|---|" + "---|" * len(MEASURES)]
    stats = {}
    for v in dict.fromkeys(_name(r) for r in rows):
        rs = [r for r in rows if _name(r) == v]
        stats[v] = _summary(rs)
        lines.append(f"| {v} | {len(rs)} | " + " | ".join(f"{a:.3f} +- {s:.3f}" if a == a else "n/a"
                                                         for a, s in stats[v].values()) + " |")
    curve = label_curve(rows)
    if curve:
        fracs = sorted({f for pts in curve.values() for f in pts})
        lines += ["", "Limited labels (" + ", ".join(MEASURES[::2]) + "; mean +- std over seeds, seeds in brackets):", "",
                  "| variant | " + " | ".join(f"{f:.0%} labels" for f in fracs) + " |", "|---|" + "---|" * len(fracs)]
        for v, pts in curve.items():
            cells = []
            for f in fracs:
                if f not in pts:
                    cells.append("")
                    continue
                (a, sa), (b, sb), n = pts[f]["f1_vs_teacher_mean"], pts[f]["auc_mean"], pts[f]["seeds"]
                cells.append(f"F1 {a:.3f} +- {sa:.3f}, AUC {b:.3f} +- {sb:.3f} ({n})")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    (out / "table1.md").write_text(text + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 3.2))
        full = [_name(r) for r in rows if r.get("label_fraction", 1.0) == 1.0]
        names = list(dict.fromkeys(full)) or list(stats)  # the bars: full labels (the curve shows the rest)
        for ax, m in zip(axes, MEASURES):
            ax.bar(names, [stats[v][m][0] for v in names], yerr=[stats[v][m][1] for v in names], capsize=4, color="#7a9cc6")
            ax.set_title(m.replace("_", " "))
            ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        fig.savefig(out / "table1.png", dpi=110)
        plt.close(fig)
        if curve:
            fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 3.2))
            for ax, m in zip(axes, MEASURES):
                for v, pts in curve.items():
                    fs = sorted(pts)
                    ax.errorbar([100 * f for f in fs], [pts[f][m][0] for f in fs], yerr=[pts[f][m][1] for f in fs],
                                marker="o", capsize=4, label=v)
                ax.set_xscale("log")
                ax.set_xlabel("training labels kept (%)")
                ax.set_title(m.replace("_", " "))
            axes[0].legend()
            fig.tight_layout()
            fig.savefig(out / "label_curve.png", dpi=110)
            plt.close(fig)
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
    return text


def analogue_recipe(args) -> Recipe:
    """The default model's recipe as the analogue's runs use it: BP4D's 12 AUs, the data split's
    seed 0, no synthetic edits, one training segment, and the paper's RoII setting (labelled images
    whitened too: ``crop_prob`` the variant's own)."""
    return Recipe.from_options(args, seed=0, edits=0, eval_every=args.steps, crop_prob=None)


def add_data_args(ap: argparse.ArgumentParser) -> None:
    """The options the analogue's recipes share: where the data come from and the batch shapes."""
    ap.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    ap.add_argument("--media", type=Path, default=Path("media"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--unlabelled-batch", type=int, default=4)
    ap.add_argument("--ff", type=int, default=512)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of --faces")
    ap.add_argument("--clip-frames", type=int, default=None, help="use only the first N frames of the training clip")
    ap.add_argument("--no-progress", dest="progress", action="store_false")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    ap.add_argument("--out", type=Path, default=Path("runs/table1"))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--label-fraction", type=float, default=1.0,
                    help="limited-label runs: keep this share of the training labels (the curve: run once per value)")
    ap.add_argument("--roi-vector", choices=("mean", "linear"), default="mean",
                    help="how each RoI map becomes a transformer token (model.roi_vector)")
    ap.add_argument("--report", action="store_true", help="only write the table and plot of the finished runs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results = _results(args.out)
    try:
        if not args.report:
            data = args.out / "data"
            recipe.data_once(analogue_recipe(args), data, args.out / "data_summary.json")
            for seed in args.seeds:  # seed-major: every variant has a first row before any has a second
                for variant in args.variants:
                    name = run_name(variant, seed, args.steps, args.label_fraction, args.roi_vector)
                    if results.done(name):
                        continue
                    row = run_one(args, data, variant, seed)
                    results.write(name, row)
                    (args.out / "results.json").write_text(json.dumps(results.rows(), indent=1))
                    log.info("finished %s seed %d: %s", variant, seed, row)
    except RTATLError as exc:
        print(f"table1: error: {exc}", file=sys.stderr)
        return 2
    rows = results.rows()
    if rows:
        print(report(args.out, rows))
    return 0


def run_name(variant: str, seed: int, steps: int, label_fraction: float, roi_vector: str) -> str:
    """The results file's stem of one run (one place: the skip test and the writer use it)."""
    return (f"{variant}_s{seed}_steps{steps}" + (f"_labels{label_fraction:g}" if label_fraction < 1 else "")
            + ("_roilinear" if roi_vector == "linear" else ""))


def _results(out: Path) -> runs.Results:
    """``OUT/results/``, one file per finished run (``runs.Results``). A run folder from before
    per-run files (``OUT/results.json`` and no ``OUT/results/``) has its rows moved into files
    first; after that ``OUT/results.json`` is only the list of every finished run, rewritten after
    each (deleting a run's file runs it again)."""
    results = runs.Results(out / "results")
    legacy = out / "results.json"
    if legacy.is_file() and not results.folder.is_dir():
        for r in json.loads(legacy.read_text()):
            name = run_name(r["variant"], r["seed"], r["steps"], r.get("label_fraction", 1.0), r.get("roi_vector", "mean"))
            if not results.done(name):
                results.write(name, r)
    return results


if __name__ == "__main__":
    sys.exit(main())
