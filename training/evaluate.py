"""``rtatl-eval``: per-AU F1 (threshold 0.5) and their mean on a fold's test subjects, or on all
three folds at once in the layout of the paper's Tables 2 and 3.

    rtatl-eval --ckpt runs/bp4d_fold1/last.ckpt --cache cache/bp4d --fold 1
    rtatl-eval --ckpt 'runs/bp4d_fold{fold}/last.ckpt' --cache cache/bp4d --folds 1 2 3 --json bp4d.json

F1 follows the common protocol (facts/datasets.md sec. 5): per AU, all test frames of the fold
pooled, frames whose label is unknown (BP4D 9) removed, binary F1 of the positive class.
Frames in which rtatl-prep found no face stay in the test set as frames where the model
predicts no AU (a method that cannot see the face gets no credit for it); their number is
reported. The three-fold table gives each fold's F1 and, as the paper does, their mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rtatl_sdk.contract.au import au_label
from rtatl_sdk.errors import InputError, RTATLError


def f1_scores(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """Per-AU F1 over pooled frames; labels -1 are ignored. F1 is 0 when it is undefined."""
    out = []
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        y, p = labels[known, j] == 1, probs[known, j] >= threshold
        tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        out.append({"f1": f1, "tp": tp, "fp": fp, "fn": fn, "n": int(known.sum()), "positives": int(y.sum())})
    return out


def icc31(pred: np.ndarray, truth: np.ndarray) -> float:
    """ICC(3,1) of two raters (Shrout & Fleiss 1979: two-way mixed, consistency, single measure),
    as the AU-intensity literature reports it: (MS_R - MS_E) / (MS_R + MS_E) for k = 2."""
    x = np.stack([np.asarray(pred, np.float64), np.asarray(truth, np.float64)], 1)
    n, k = x.shape
    if n < 2:
        return float("nan")
    grand = x.mean()
    ms_r = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + grand
    ms_e = (resid**2).sum() / ((n - 1) * (k - 1))
    denom = ms_r + (k - 1) * ms_e
    return float((ms_r - ms_e) / denom) if denom > 0 else 0.0


def intensity_scores(pred: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Per AU over frames with a known intensity (truth >= 0): ICC(3,1), Pearson r, MAE."""
    out = []
    for j in range(truth.shape[1]):
        known = truth[:, j] >= 0
        p, t = pred[known, j], truth[known, j]
        r = float(np.corrcoef(p, t)[0, 1]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else 0.0
        out.append({"icc": icc31(p, t), "pearson": r, "mae": float(np.abs(p - t).mean()) if len(p) else float("nan"),
                    "n": int(known.sum())})
    return out


def _predict(model, cache: Path, subjects, aus, pick, batch_size: int = 32, device: str = "cpu"):
    """``pick(backbone output)`` on the centre crop of every cached frame of ``subjects``, and the dataset."""
    import torch

    from .data.dataset import AUDataset, collate

    ds = AUDataset(cache, subjects, train=False, labelled=True, aus=aus)
    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(ds), batch_size):
            b = collate([ds[i] for i in range(s, min(len(ds), s + batch_size))])
            out.append(pick(model.backbone(b["image"].to(device), b["centres"].to(device))).cpu().numpy())
    return np.concatenate(out), ds


def predict_intensity(model, cache: Path, subjects, aus, batch_size: int = 32, device: str = "cpu"):
    """(predicted 0-5 intensities, coded intensities, -1 unknown) of every cached frame of ``subjects``."""
    pred, ds = _predict(model, cache, subjects, aus, lambda o: o.intensity, batch_size, device)
    return pred, ds.index.intensities[:, ds.cols]


def predict_outputs(model, cache: Path, aus, batch_size: int = 32, device: str = "cpu") -> dict[str, np.ndarray]:
    """Every output of the network on the centre crop of every cached frame, in one pass:
    ``probs`` (F, N), and ``intensity`` (F, N) / ``emotions`` (F, E) expression probabilities where
    the network has those heads."""
    import torch

    def pick(o):
        parts = [torch.sigmoid(o.logits)] + ([o.intensity] if o.intensity is not None else []) \
            + ([torch.softmax(o.emotions, 1)] if o.emotions is not None else [])
        return torch.cat(parts, 1)

    out, _ = _predict(model, cache, None, aus, pick, batch_size, device)
    n = len(aus)
    res = {"probs": out[:, :n]}
    k = n
    if model.backbone.intensity:
        res["intensity"], k = out[:, k:k + n], k + n
    if model.backbone.emotions:
        res["emotions"] = out[:, k:]
    return res


def predict_cache(model, cache: Path, subjects, aus, batch_size: int = 32, device: str = "cpu"):
    """(probabilities, labels) on the centre crop of every cached frame of ``subjects``."""
    import torch

    probs, ds = _predict(model, cache, subjects, aus, lambda o: torch.sigmoid(o.logits), batch_size, device)
    # hard labels (1 / 0 / -1 unknown) even where the cache trains on soft targets
    return probs, ds.index.labels[:, ds.cols].astype(np.int64)


def noface_labels(cache: Path, subjects, aus) -> np.ndarray:
    """Labels (columns of ``aus``) of the frames of ``subjects`` in which rtatl-prep found no face."""
    from .data.dataset import CacheIndex

    index = CacheIndex(cache, subjects)
    return index.noface_labels[:, [index.aus.index(a) for a in aus]]


def evaluate_checkpoint(ckpt: Path, cache: Path, subjects, store: bool = False, device: str = "cpu") -> dict:
    from .checkpoint import model_from_checkpoint, save_checkpoint

    model, state = model_from_checkpoint(ckpt)
    aus = tuple(state["aus"])
    probs, labels = predict_cache(model, cache, subjects, aus, device=device)
    missed = noface_labels(cache, subjects, aus)  # no face found: the model predicts no AU there
    probs, labels, noface = np.concatenate([probs, np.zeros(missed.shape)]), np.concatenate([labels, missed]), len(missed)
    per = f1_scores(probs, labels)
    report = {"checkpoint": str(ckpt), "step": state.get("step"), "subjects": list(subjects) if subjects else None,
              "frames": len(labels), "frames_without_face": noface, "aus": [au_label(a) for a in aus],
              "f1": {au_label(a): r["f1"] for a, r in zip(aus, per)},
              "counts": {au_label(a): {k: v for k, v in r.items() if k != "f1"} for a, r in zip(aus, per)}}
    report["f1_mean"] = float(np.mean(list(report["f1"].values())))
    if getattr(model.backbone, "intensity", False):
        pred, truth = predict_intensity(model, cache, subjects, aus, device=device)
        if (truth >= 0).any():
            per_i = intensity_scores(pred, truth)
            for key in ("icc", "pearson", "mae"):
                report[key] = {au_label(a): r[key] for a, r in zip(aus, per_i)}
                report[f"{key}_mean"] = float(np.nanmean(list(report[key].values())))
    if store:
        state["metrics"] = {"f1_mean": report["f1_mean"], "f1": report["f1"], "frames": report["frames"]}
        save_checkpoint(Path(ckpt), state)
    return report


def _row(label: str, f1: dict, aus: list[str]) -> str:
    mean = float(np.mean([f1[a] for a in aus]))
    return f"| {label} | " + " | ".join(f"{100 * f1[a]:.1f}" for a in aus) + f" | {100 * mean:.1f} |"


def format_table(report: dict) -> str:
    aus = report["aus"]
    head = "| " + " | ".join(["AU"] + [a[2:] for a in aus] + ["Avg."]) + " |"
    sep = "|" + "---|" * (len(aus) + 2)
    rows = [_row("F1 (%)", report["f1"], aus)]
    for key, label in (("icc", "ICC(3,1) (x100)"), ("pearson", "Pearson r (x100)")):
        if key in report:
            rows.append(_row(label, report[key], aus))
    if "mae" in report:
        rows.append("| MAE | " + " | ".join(f"{report['mae'][a]:.2f}" for a in aus) + f" | {report['mae_mean']:.2f} |")
    return "\n".join([head, sep, *rows,
                      f"{report['frames']} frames ({report.get('frames_without_face', 0)} without a face, counted as "
                      f"predicting no AU), checkpoint step {report['step']}"])


def three_folds(ckpt_pattern: str, cache: Path, dataset: str, folds=(1, 2, 3), device: str = "cpu") -> dict:
    """Each fold's checkpoint (``ckpt_pattern`` with ``{fold}``) on that fold's test subjects,
    and the per-AU mean over the folds (Tables 2 and 3 of the paper report that mean)."""
    from .data.dataset import all_subjects
    from .data.splits import check_present

    if "{fold}" not in ckpt_pattern:
        raise RTATLError(f"--ckpt {ckpt_pattern}: with --folds it must contain {{fold}}, e.g. runs/bp4d_fold{{fold}}/last.ckpt")
    present = all_subjects(cache)
    reports = {}
    for k in folds:
        _, subjects = check_present(dataset, k, present)
        reports[k] = evaluate_checkpoint(Path(ckpt_pattern.format(fold=k)), cache, subjects, device=device)
    aus = reports[folds[0]]["aus"]
    if any(r["aus"] != aus for r in reports.values()):
        raise RTATLError("the folds' checkpoints predict different AUs: " + "; ".join(f"fold {k}: {r['aus']}" for k, r in reports.items()))
    mean = {a: float(np.mean([r["f1"][a] for r in reports.values()])) for a in aus}
    return {"folds": {str(k): r for k, r in reports.items()}, "aus": aus, "f1": mean, "f1_mean": float(np.mean(list(mean.values())))}


def format_three_folds(res: dict) -> str:
    aus = res["aus"]
    lines = ["| " + " | ".join(["F1 (%)"] + [a[2:] for a in aus] + ["Avg."]) + " |", "|" + "---|" * (len(aus) + 2)]
    lines += [_row(f"fold {k}", r["f1"], aus) for k, r in res["folds"].items()]
    lines.append(_row("**mean**", res["f1"], aus))
    lines += [f"fold {k}: {r['frames']} frames ({r['frames_without_face']} without a face, counted as predicting no AU), "
              f"{len(r['subjects'] or [])} subjects, step {r['step']}" for k, r in res["folds"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-eval", description=__doc__)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True, help="rtatl-prep cache of the labelled dataset")
    ap.add_argument("--dataset", choices=["BP4D", "DISFA"], default=None, help="with --fold: the split to use")
    ap.add_argument("--fold", type=int, default=None, help="evaluate this fold's test subjects (default: the checkpoint's)")
    ap.add_argument("--folds", type=int, nargs="+", default=None,
                    help="evaluate these folds at once; --ckpt then holds {fold}, e.g. 'runs/bp4d_fold{fold}/last.ckpt'")
    ap.add_argument("--subjects", nargs="*", default=None, help="explicit subject list instead of a fold")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--store", action="store_true", help="store the metrics in the checkpoint (export puts them on the card)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        from .checkpoint import load_checkpoint, training_config
        from .data.dataset import all_subjects
        from .data.splits import check_present
        from .devices import resolve_device

        if args.json is not None and (args.json.is_dir() or (args.json.exists() and not args.json.is_file())):
            raise InputError(f"--json {args.json}", "is a folder (or not a regular file); give the report's file name")
        args.device = str(resolve_device(args.device))
        if args.folds:
            first = Path(str(args.ckpt).format(fold=args.folds[0]))
            ds = args.dataset or training_config(load_checkpoint(first), first)["data"]["dataset"]
            res = three_folds(str(args.ckpt), args.cache, ds, tuple(args.folds), args.device)
            print(format_three_folds(res))
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(res, indent=1))
            return 0
        subjects = args.subjects
        if subjects is None and args.fold is not None:
            ds = args.dataset or training_config(load_checkpoint(args.ckpt), args.ckpt)["data"]["dataset"]
            _, subjects = check_present(ds, args.fold, all_subjects(args.cache))
        if subjects is None:
            state = load_checkpoint(args.ckpt)
            training_config(state, args.ckpt)
            subjects = state.get("test_subjects")
        report = evaluate_checkpoint(args.ckpt, args.cache, subjects, store=args.store, device=args.device)
    except RTATLError as exc:
        print(f"rtatl-eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
