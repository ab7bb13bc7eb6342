"""Judge an exported AU model against its blendshape teacher on people it never saw, through the SDK.

    python bench/judge_default_model.py                       # the installed default model
    python bench/judge_default_model.py --model model.onnx --faces ../shared/faces

The validation people are the default recipe's (``training.recipes.corpus.split_records`` with
the same fraction and seed), so the model never trained on them. Each image is padded as in
the recipe and goes through ``AUDetector(blendshapes=True)``: the student's probabilities (and
the card's thresholds) and the teacher's scores (``rtatl_sdk.teacher``) come from the same face
and the same landmarks, and ``training.recipes.measures`` judges both. Prints the table;
``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtatl_sdk import AUDetector, InputError, load_image  # noqa: E402
from rtatl_sdk.teacher import TEACHER_THRESHOLD, teacher_scores  # noqa: E402
from training.recipes import corpus, measures, targets  # noqa: E402

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--model", type=Path, default=None, help="exported .onnx (default: the installed default model)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--neutral-rates", type=float, nargs="*", default=None,
                    help="also the trade-off curve: thresholds fitted on half of the validation people under each "
                         "stated neutral rate per AU, judged on the other half")
    args = ap.parse_args(argv)

    records, _ = corpus.read_corpus(args.faces)
    _, val = corpus.split_records(records, args.val_fraction, args.seed)
    det = AUDetector(args.model, blendshapes=True)
    aus = det.au_numbers
    probs, teach, emo, who, missed = [], [], [], [], 0
    t0 = time.time()
    for rec in val:
        try:
            faces = det.detect(corpus.padded(load_image(rec.path)))
        except InputError:
            faces = []
        if not faces:
            missed += 1
            continue
        f = max(faces, key=lambda x: x.box.w * x.box.h)  # results carry Box, not the pipeline's Face
        probs.append([f.aus[a].probability for a in det.aus])
        teach.append(teacher_scores(f.blendshapes, aus))
        emo.append(rec.emotion)
        who.append(rec.identity)
    probs, teach, emo, who = np.array(probs), np.array(teach), np.array(emo), np.array(who)
    teacher_labels = (teach >= TEACHER_THRESHOLD).astype(np.int8)
    target_labels = targets.hard(np.array([targets.combine(t, e, aus) for t, e in zip(teach, emo)]))
    student = measures.judge(probs, det.thresholds, emo, who, aus, teacher_labels, target_labels)
    teacher = measures.judge(teach, [TEACHER_THRESHOLD] * len(aus), emo, who, aus, teacher_labels, target_labels)
    print(f"model: {det.model_path} ({det.engine.providers[0]}); {len(probs)} faces of {len(set(who))} validation "
          f"people, {missed} images without a face; {time.time() - t0:.0f} s")
    print(measures.table(student, teacher))
    if args.neutral_rates:
        print(measures.tradeoff_table(measures.tradeoff(probs, emo, who, aus, teacher_labels, target_labels,
                                                        args.neutral_rates, args.seed)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(det.model_path), "student": student, "teacher": teacher,
                                         "missed": missed}, indent=1))
    det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
