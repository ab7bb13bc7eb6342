"""The default model's recipe: RTATL trained on CPU from what is obtainable offline.

    python -m training.recipes.default_model --media ../shared/media --out runs/default

Data (all real frames from the media folder; no BP4D/DISFA):
* labelled: faces of the training identities (``WolfgangLanger_Pexels.mp4`` even frames,
  the five people of ``multi_face.jpg``), labelled by the blendshape teacher
  (``rtatl_sdk.teacher``), plus synthetic AU edits of those faces (``training.edits``) whose
  edited AUs are exact and whose flow is exact;
* unlabelled: the odd video frames, for the self-supervised tasks; TV-L1 flow t -> t+3 on all
  video frames;
* held out, never trained on: the man of ``single_face.mp4``, ``noface_face.mov`` and
  ``single_face.jpg``. He is the evaluation identity: per-AU F1 against the teacher on his
  frames, per-AU F1 on synthetic edits of his neutral frames, and the AU12 margin between his
  smiling and neutral frames.

The trained model is exported by ``export/`` (fp32 plus int8 when its decisions agree with
fp32 on >= 98 % of real faces) with a card that says all of this.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from rtatl_sdk import geometry
from rtatl_sdk.au import AU_SETS, au_label
from rtatl_sdk.teacher import TEACHER_THRESHOLD, teacher_scores

from .. import prep
from ..edits import AU_EDITS, apply_edit
from ..flow import FlowParams, tvl1_flow

log = logging.getLogger("rtatl.recipe")
AUS = AU_SETS["BP4D"]
TRAIN_VIDEO = "WolfgangLanger_Pexels.mp4"
TRAIN_IMAGES = ("multi_face.jpg",)
HELD_VIDEO = "single_face.mp4"
HELD_OTHER = ("noface_face.mov", "single_face.jpg")
SMILE_FROM, NEUTRAL_UNTIL = 24, 18  # single_face.mp4: neutral frames 0-17, smiling from 24 on
FLOW = FlowParams(scale=0.5)


def _faces_of_video(pipe, path: Path, stride: int = 1):
    from rtatl_sdk.video import iter_frames

    out = []
    for fr in iter_frames(path):
        if fr.index % stride or fr.image is None:
            continue
        faces = pipe.process(fr.image)
        if faces:
            f = max(faces, key=lambda x: x.box.w * x.box.h)
            out.append((fr.index, fr.image, f))
    return out


def _teacher_labels(face) -> np.ndarray:
    return (teacher_scores(face.blendshapes, AUS) >= TEACHER_THRESHOLD).astype(np.int8)


def build_caches(media: Path, root: Path, edits_per_face: int, seed: int) -> dict:
    """Write the labelled, unlabelled and held-out caches (rtatl-prep's format)."""
    from rtatl_sdk import load_image
    from rtatl_sdk.face import FacePipeline

    rng = np.random.default_rng(seed)
    pipe = FacePipeline(blendshapes=True)
    lab, unl, held, held_edit = root / "labelled", root / "unlabelled", root / "heldout", root / "heldout_edits"
    for c in (lab, unl, held, held_edit):
        prep.write_manifest(c, "DEFAULT", AUS, FLOW)
    counts = {}

    # training video: teacher labels on even frames, unlabelled odd frames, TV-L1 flow t -> t+3
    video = _faces_of_video(pipe, media / TRAIN_VIDEO)
    by_index = {i: (img, f) for i, img, f in video}
    seqs = {"even": ([], lab), "odd": ([], unl)}
    for i, _img, f in video:
        flow = None
        if i + prep.FLOW_STEP in by_index:
            nxt = geometry.warp_to_canvas(by_index[i + prep.FLOW_STEP][0], f.aligned.matrix)
            flow = tvl1_flow(f.aligned.image, nxt, FLOW)
        key = "even" if i % 2 == 0 else "odd"
        cache = seqs[key][1]
        prep.write_frame(cache, f"video_{key}", i, f.aligned.image, flow)
        labels = _teacher_labels(f) if key == "even" else np.full(len(AUS), -1, np.int8)
        seqs[key][0].append((i, labels, f.aligned.landmarks, f.aligned.matrix, flow is not None))
    for key, (rows, cache) in seqs.items():
        prep.write_part(cache, f"video_{key}", "train_video", key, [r[0] for r in rows], [r[1] for r in rows],
                        [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])
        counts[f"video_{key}"] = len(rows)

    # still images of other training identities
    stills = []
    for name in TRAIN_IMAGES:
        stills += pipe.process(load_image(media / name))
    for k, f in enumerate(stills):
        prep.write_frame(lab, "stills", k, f.aligned.image)
    prep.write_part(lab, "stills", "train_stills", "stills", list(range(len(stills))), [_teacher_labels(f) for f in stills],
                    [f.aligned.landmarks for f in stills], [f.aligned.matrix for f in stills], [False] * len(stills))
    counts["stills"] = len(stills)

    # synthetic edits of the labelled training faces: exact labels for the edited AUs, exact flow
    bases = [(f.aligned.image, f.aligned.landmarks, _teacher_labels(f)) for i, _, f in video if i % 2 == 0]
    bases += [(f.aligned.image, f.aligned.landmarks, _teacher_labels(f)) for f in stills]
    counts["edits"] = _write_edits(lab, "edits", "train_edits", bases, edits_per_face, rng, keep_other_labels=True)

    # held-out identity: teacher labels on every face, edits of his neutral frames
    held_faces = _faces_of_video(pipe, media / HELD_VIDEO)
    other = []
    for name in HELD_OTHER:
        p = media / name
        if p.suffix == ".jpg":
            other += [(0, None, f) for f in pipe.process(load_image(p))[:1]]
        else:
            other += _faces_of_video(pipe, p, stride=2)
    for key, faces in (("video", held_faces), ("other", other)):
        for k, (_, _, f) in enumerate(faces):
            prep.write_frame(held, key, k, f.aligned.image)
        prep.write_part(held, key, "heldout", key, [i for i, _, _ in faces] if key == "video" else list(range(len(faces))),
                        [_teacher_labels(f) for _, _, f in faces], [f.aligned.landmarks for _, _, f in faces],
                        [f.aligned.matrix for _, _, f in faces], [False] * len(faces))
        counts[f"heldout_{key}"] = len(faces)
    neutral = [(f.aligned.image, f.aligned.landmarks, _teacher_labels(f)) for i, _, f in held_faces if i < NEUTRAL_UNTIL]
    counts["heldout_edits"] = _write_edits(held_edit, "edits", "heldout", neutral, len(AUS), rng, keep_other_labels=False,
                                           one_each=True)
    pipe.landmarker.close()
    return counts


def _write_edits(cache, key, subject, bases, per_face, rng, keep_other_labels: bool, one_each: bool = False) -> int:
    """Edited faces. Training: the edited AUs become 1, the others keep the teacher's labels.
    Evaluation (``keep_other_labels=False``): each neutral base and its edit per AU; labels are
    the edit (1 for the edited AU, 0 otherwise), unknown (-1) where the teacher saw the AU in
    the base face, and the unedited base is included as the all-negative reference."""
    editable = [a for a in AUS if a in AU_EDITS]
    rows, n = [], 0
    for img, pts, teacher in bases:
        if one_each:
            choices = [(a,) for a in editable]
            ref = np.where(teacher == 1, -1, 0).astype(np.int8)
            prep.write_frame(cache, key, n, img)
            rows.append((n, ref, pts, np.eye(2, 3), False))
            n += 1
        else:
            choices = [tuple(rng.choice(editable, size=int(rng.integers(1, 3)), replace=False)) for _ in range(per_face)]
        for aus in choices:
            strength = float(rng.uniform(0.8, 1.6))
            edited, new_pts, flow = apply_edit(img, pts, aus, strength)
            labels = teacher.copy() if keep_other_labels else np.where(teacher == 1, -1, 0).astype(np.int8)
            for a in aus:
                labels[AUS.index(a)] = 1
            prep.write_frame(cache, key, n, edited, flow)
            rows.append((n, labels, new_pts, np.eye(2, 3), True))
            n += 1
    prep.write_part(cache, key, subject, key, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                    [r[3] for r in rows], [r[4] for r in rows])
    return n


def evaluate(ckpt: Path, root: Path) -> dict:
    from training.evaluate import f1_scores, predict_cache

    from ..checkpoint import model_from_checkpoint
    from ..data.dataset import CacheIndex

    model, _ = model_from_checkpoint(ckpt)
    out = {}
    for name, cache in (("teacher_heldout", root / "heldout"), ("edits_heldout", root / "heldout_edits")):
        probs, labels = predict_cache(model, cache, None, AUS)
        per = f1_scores(probs, labels)
        out[name] = {au_label(a): round(r["f1"], 4) for a, r in zip(AUS, per)}
        out[name + "_positives"] = {au_label(a): r["positives"] for a, r in zip(AUS, per)}
        out[name + "_mean"] = round(float(np.mean([r["f1"] for r in per])), 4)
        if name == "teacher_heldout":
            idx = CacheIndex(cache)
            video = idx.keys == "video"
            frames = idx.frames
            p12 = probs[:, AUS.index(12)]
            smile, neutral = video & (frames >= SMILE_FROM), video & (frames < NEUTRAL_UNTIL)
            out["au12_smiling_mean"] = round(float(p12[smile].mean()), 4)
            out["au12_neutral_mean"] = round(float(p12[neutral].mean()), 4)
            out["au12_margin"] = round(out["au12_smiling_mean"] - out["au12_neutral_mean"], 4)
            jpg = (idx.keys == "other") & (np.arange(len(idx)) == np.flatnonzero(idx.keys == "other")[-1])
            out["single_face_jpg_au12"] = round(float(p12[jpg][0]), 4)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=Path("../shared/media"))
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--edits-per-face", type=int, default=2)
    ap.add_argument("--ship", type=Path, default=None, help="export the result into this folder (e.g. rtatl_sdk/models)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    data = args.out / "data"
    if not (data / "heldout_edits" / "parts" / "edits.npz").is_file():
        counts = build_caches(args.media, data, args.edits_per_face, args.seed)
        (args.out / "data_counts.json").write_text(json.dumps(counts, indent=1))
    counts = json.loads((args.out / "data_counts.json").read_text())
    t_data = time.time() - t0
    log.info("data ready in %.0f s: %s", t_data, counts)

    from ..config import load_config
    from ..train import train

    cfg = load_config(None, [f"data.cache={data / 'labelled'}", f"data.unlabelled_cache={data / 'unlabelled'}",
                             "data.fold=null", "data.dataset=BP4D", "data.colour_jitter=0.3", "model.variant=rtatl",
                             "model.ff=512", "optim.balance_labels=true",
                             f"optim.steps={args.steps}", "optim.batch_size=12", "optim.unlabelled_batch_size=6",
                             f"run.out={args.out / 'train'}", f"run.seed={args.seed}", "run.workers=0",
                             "run.log_every=10", "run.ckpt_every=100"])
    res = train(cfg)
    t_train = time.time() - t0 - t_data
    ckpt = Path(res["checkpoint"])
    metrics = evaluate(ckpt, data)
    metrics.update({"data_seconds": round(t_data), "train_seconds": round(t_train), "steps": res["steps"], "seed": args.seed})
    log.info("held-out metrics: %s", json.dumps(metrics))
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    from ..checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    state["metrics"] = {"f1_teacher_heldout_mean": metrics["teacher_heldout_mean"],
                        "f1_teacher_heldout": metrics["teacher_heldout"],
                        "f1_edits_heldout_mean": metrics["edits_heldout_mean"],
                        "f1_edits_heldout": metrics["edits_heldout"],
                        "au12_margin_heldout": metrics["au12_margin"]}
    state["training_data"] = (
        f"{counts['video_even'] + counts['stills']} real faces of {1 + 5} identities from the project's media "
        f"(WolfgangLanger_Pexels.mp4, multi_face.jpg) labelled by a MediaPipe-blendshape teacher, {counts['edits']} "
        f"synthetic AU edits of them, {counts['video_odd']} unlabelled frames; not trained or evaluated on BP4D/DISFA")
    state["notes"] = ("Distilled from a blendshape teacher on a handful of identities; ResNet-18 from random init (no "
                      "ImageNet weights). Metrics are on one held-out identity (single_face.mp4/noface_face.mov/"
                      "single_face.jpg): F1 against the teacher and F1 on synthetic edits. Not a FACS benchmark result.")
    save_checkpoint(ckpt, state)
    if args.ship:
        from export import export_model

        args.ship.mkdir(parents=True, exist_ok=True)
        try:
            reports = export_model(ckpt, args.ship, int8=True, calib=args.media / TRAIN_VIDEO,
                                   faces=args.media / HELD_VIDEO, max_flip=0.02)
        except Exception as exc:  # int8 rejected: ship fp32 alone, and say so
            log.warning("export: %s; shipping fp32 only", exc)
            reports = export_model(ckpt, args.ship, faces=args.media / HELD_VIDEO)
        for r in reports:
            log.info(r.summary())
        (args.ship / "recipe_metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info("recipe finished in %.0f s", time.time() - t0)
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
