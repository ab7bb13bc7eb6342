"""Judge an exported AU model against its blendshape teacher on people it never saw, through the SDK.

    python -m training.recipes.judge                       # the installed default model
    python -m training.recipes.judge --model model.onnx --faces ../shared/faces
    python -m training.recipes.judge --agree-with rtatl_sdk/models/model.onnx   # int8 vs fp32 on these people
    python -m training.recipes.judge --model a.onnx --compare b.onnx            # two models, paired bootstrap

The validation people are the default recipe's (``training.recipes.corpus.split_records`` with
the same fraction and seed), so the model never trained on them. Each image is padded as in
the recipe and goes through ``AUDetector(blendshapes=True)``: the student's probabilities (and
the card's thresholds) and the teacher's scores (``training.teacher``) come from the same face
and the same landmarks, and ``training.recipes.measures`` judges both. Prints the table;
``--json`` writes everything. ``--compare`` judges a second model on the same faces and gives
each difference a 95 % interval from resampling the people (``measures.paired_bootstrap``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from rtatl_sdk import AUDetector, InputError, load_image
from rtatl_sdk.face.pipeline import largest_face
from training.recipes import corpus, measures, targets
from training.teacher import TEACHER_THRESHOLD, teacher_scores

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--model", type=Path, default=None, help="exported .onnx (default: the installed default model)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--agree-with", type=Path, default=None,
                    help="a second .onnx (for example fp32 beside the int8 default): its decisions on the same faces, "
                         "at the card's thresholds, against the judged model's (share flipped per AU)")
    ap.add_argument("--compare", type=Path, default=None,
                    help="a second model judged on the same faces: side by side, with paired-bootstrap intervals "
                         "of the AUC differences (resampling people)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="resamples for --compare (default %(default)s)")
    ap.add_argument("--neutral-rates", type=float, nargs="*", default=None,
                    help="also the trade-off curve: thresholds fitted on half of the validation people under each "
                         "stated neutral rate per AU, judged on the other half")
    return ap


def _largest(det, rec):
    """The largest face ``det`` finds in the padded image of ``rec`` (None: none, or unreadable)."""
    try:
        faces = det.detect(corpus.padded(load_image(rec.path)))
    except InputError:
        return None
    return largest_face(faces)


def collect(det, other, val, aus) -> dict:
    """Scores of ``det`` (and ``other``, on the same image and face pipeline), the teacher's
    scores, emotions and identities of the validation faces; ``missed``: images without a face."""
    out = {"probs": [], "teach": [], "emo": [], "who": [], "probs2": [], "missed": 0}
    for rec in val:
        f = _largest(det, rec)
        g = _largest(other, rec) if other is not None and f is not None else None
        if f is None or (other is not None and g is None):  # the pipelines are the same: g missing is not expected
            out["missed"] += 1
            continue
        if g is not None:
            out["probs2"].append([g.aus[a].score for a in other.aus])
        out["probs"].append([f.aus[a].score for a in det.aus])  # raw scores: the thresholds are on them
        out["teach"].append(teacher_scores(f.blendshapes, aus))
        out["emo"].append(rec.emotion)
        out["who"].append(rec.identity)
    return {k: (np.array(v) if isinstance(v, list) else v) for k, v in out.items()}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.compare and args.agree_with:
        raise SystemExit("give --agree-with or --compare, not both")
    records, _ = corpus.read_corpus(args.faces)
    _, val = corpus.split_records(records, args.val_fraction, args.seed)
    det = AUDetector(args.model, blendshapes=True)
    second = args.agree_with or args.compare
    other = AUDetector(second) if second else None
    if other is not None and other.au_numbers != det.au_numbers:
        raise SystemExit(f"{second}: its AUs {other.au_numbers} are not {det.au_numbers}")
    aus = det.au_numbers
    t0 = time.time()
    c = collect(det, other, val, aus)
    probs, teach, emo, who = c["probs"], c["teach"], c["emo"], c["who"]
    teacher_labels = (teach >= TEACHER_THRESHOLD).astype(np.int8)
    target_labels = targets.hard(np.array([targets.combine(t, e, aus) for t, e in zip(teach, emo)]))
    student = measures.judge(probs, det.thresholds, emo, who, aus, teacher_labels, target_labels)
    teacher = measures.judge(teach, [TEACHER_THRESHOLD] * len(aus), emo, who, aus, teacher_labels, target_labels)
    print(f"model: {det.model_path} ({det.engine.providers[0]}); {len(probs)} faces of {len(set(who))} validation "
          f"people, {c['missed']} images without a face; {time.time() - t0:.0f} s")
    print(measures.table(student, teacher))
    agreement = compared = None
    if args.compare:
        compared = compare(c["probs2"], other, probs, emo, who, teacher_labels, target_labels, student, args.bootstrap)
    elif other is not None:
        agreement = agree(probs, c["probs2"], det.thresholds, det.aus)
        print_agreement(agreement, det, other, len(probs))
    if other is not None:
        other.close()
    if args.neutral_rates:
        print(measures.tradeoff_table(measures.tradeoff(probs, emo, who, aus, teacher_labels, target_labels,
                                                        args.neutral_rates, args.seed)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(det.model_path), "student": student, "teacher": teacher,
                                         "missed": c["missed"], "agreement": agreement, "compared": compared}, indent=1))
    det.close()
    return 0


def print_agreement(agreement: dict, det, other, n: int) -> None:
    print(f"\nDecisions of {det.model_path.name} against {other.model_path.name} on the same {n} faces "
          f"(card thresholds): {100 * agreement['flip_share']:.2f} % flipped, mean |dp| {agreement['mean_abs_dp']:.4f}, "
          f"max |dp| {agreement['max_abs_dp']:.3f}")
    print("| AU | " + " | ".join(a[2:] for a in det.aus) + " |\n|---|" + "---|" * len(det.aus))
    print("| flipped % | " + " | ".join(f"{100 * v:.1f}" for v in agreement["flip_share_per_au"].values()) + " |")


def compare(probs2, other, probs, emo, who, teacher_labels, target_labels, student, reps: int) -> dict:
    """The second model judged on the same faces (its own card's thresholds), printed beside the
    first with the paired-bootstrap interval of each AUC difference (first minus second)."""
    aus = other.au_numbers
    judged = measures.judge(probs2, other.thresholds, emo, who, aus, teacher_labels, target_labels)
    boot = measures.paired_bootstrap(probs, probs2, emo, who, aus, reps)
    print(f"\nAgainst {other.model_path} on the same faces; first minus second, 95 % interval over {reps} resamples "
          f"of the {boot['people']} people:")
    print("| measure | first | second | difference | 95 % interval |\n|---|---|---|---|---|")
    for name, row in boot["rows"].items():
        a = student["auc_mean"] if name == "AUC mean" else student["contrasts"][name]["auc"]
        b = judged["auc_mean"] if name == "AUC mean" else judged["contrasts"][name]["auc"]
        print(f"| AUC {name} | {a:.3f} | {b:.3f} | {row['diff']:+.3f} | {row['ci95'][0]:+.3f} .. {row['ci95'][1]:+.3f} |")
    print(f"| AUs present per neutral face | {student['neutral_present']:.2f} | {judged['neutral_present']:.2f} | | |")
    for au in student["rise"]:
        s, t = student["rise"][au], judged["rise"].get(au, {})
        print(f"| {au} rise neutral->happy, mean / share | {s['mean_rise']:+.3f} / {s['share_rising']:.2f} | "
              f"{t.get('mean_rise', float('nan')):+.3f} / {t.get('share_rising', float('nan')):.2f} | | |")
    print(f"| F1 vs the teacher, mean | {student['f1_vs_teacher_mean']:.3f} | {judged['f1_vs_teacher_mean']:.3f} | | |")
    return {"model": str(other.model_path), "judged": judged, "bootstrap": boot}


def agree(probs: np.ndarray, probs2: np.ndarray, thresholds, aus) -> dict:
    """Decision agreement of two engines on the same faces at the same thresholds."""
    thr = np.asarray(thresholds)
    flips = (probs >= thr) != (probs2 >= thr)
    dp = np.abs(probs - probs2)
    return {"faces": int(len(probs)), "flip_share": float(flips.mean()), "mean_abs_dp": float(dp.mean()),
            "max_abs_dp": float(dp.max()), "flip_share_per_au": {a: float(flips[:, j].mean()) for j, a in enumerate(aus)}}


if __name__ == "__main__":
    sys.exit(main())
