"""The default model's recipe: RTATL distilled on CPU from thousands of people.

    python -m training.recipes.default_model --faces ../shared/faces --out runs/default              # 12 AUs
    python -m training.recipes.default_model --faces ../shared/faces --out runs/v2 --aus OPENFACE \
        --intensity --steps 1500                                                                    # the shipped v2

One command, resumable after a kill (re-run it: finished data chunks, training steps and
evaluations are kept). It ends at a checkpoint, ``OUT/model.ckpt``, which carries the
per-AU thresholds, the validation report and the provenance; shipping is the export step::

    rtatl-export --ckpt runs/default/model.ckpt --out rtatl_sdk/models --int8 \
        --calib media/WolfgangLanger_Pexels.mp4 --faces media --max-flip 0.02

Data (``OUT/data``):

* ``train``: every face of ``--faces`` whose identity is not in the validation split (each
  image padded by 30 %, edge-replicated, then the face pipeline; largest face), the faces of the
  training clip ``WolfgangLanger_Pexels.mp4`` (even frames, with TV-L1 flow t -> t+3) and of
  ``multi_face.jpg``, and ``--edits`` synthetic AU edits of neutral training faces of many
  identities (exact labels, exact flow). Targets: ``training.recipes.targets`` (teacher soft
  scores + weak emotion prior + edits; the module says how and why).
* ``unlabelled``: the clip's odd frames with TV-L1 flow. RoI inpainting crops every image of
  both batches, so every face also serves the inpainting task; flow comes from the clip and the
  edits.
* ``val``: the faces of the validation identities (``--val-fraction`` of the identities, a
  seeded hash: nobody is on both sides), used for model selection (mean prototype-AU AUC) and
  for the per-AU thresholds; the report (``training.recipes.measures``) puts the student next
  to the teacher on the same faces.
* ``heldout``: the man of ``single_face.mp4`` (never trained on): his AU12 on neutral vs
  smiling frames.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtatl_sdk import load_image
from rtatl_sdk.contract import geometry
from rtatl_sdk.contract.emotions import EMOTIONS
from rtatl_sdk.errors import InputError, RTATLError

from ..data import cache as cache_format
from ..flow import FlowParams, tvl1_flow
from ..teacher import TEACHER_THRESHOLD, teacher_scores
from . import corpus, distil, measures, operating, runs, targets
from .spec import GRAPHS, Recipe, describe_rates, neutral_rates

log = logging.getLogger("rtatl.recipe")
#: what the default model's 0-5 intensities mean (``--intensity``): not FACS A-E coding
INTENSITY_SCALE = ("0-5: 5 x the AU's training target (the blendshape teacher's score, AU6 also from the smile, raised by "
                   "the crowd's emotion votes, pulled down on neutral faces) and 4 x a synthetic edit's strength; "
                   "anchored at rest (a crowd-neutral face of the validation people reads 0); not FACS A-E intensity coding")
#: an edit of strength s gives its AUs the intensity min(5, EDIT_INTENSITY * s)
EDIT_INTENSITY = 4.0


TRAIN_VIDEO = "WolfgangLanger_Pexels.mp4"
TRAIN_IMAGES = ("multi_face.jpg",)
HELD_VIDEO = "single_face.mp4"
SMILE_FROM, NEUTRAL_UNTIL = 24, 18  # single_face.mp4: neutral frames 0-17, smiling from 24 on
FLOW = FlowParams(scale=0.5)
CHUNK = 200  #: faces per cache part (the unit of resumption)
TERMS = ("Research use only: the weights are trained on face crops of Labeled Faces in the Wild (distributed for "
         "research) with crowd emotion labels, FER2013 faces (no licence stated; research use) with the FER+ crowd votes "
         "(MIT), 40 CC BY 4.0 portraits (DeBruine & Jones) and MIT-licensed test media.")


# ---------------------------------------------------------------- faces -> cache parts
class FaceRow(NamedTuple):
    """One face of a cache part as the recipe writes it."""

    frame: int
    teacher: np.ndarray  #: (N,) the blendshape teacher's scores (-1: none, an edit)
    target: np.ndarray  #: (N,) the combined training target (-1: unknown)
    landmarks: np.ndarray
    matrix: np.ndarray
    record: corpus.FaceRecord


class Job(NamedTuple):
    """A chunk of work for a worker: write ``items`` into part ``key`` of ``cache`` for AU set ``aus``."""

    cache: Path
    key: str
    items: list
    aus: tuple[int, ...]


@functools.lru_cache(maxsize=1)
def _pipeline():
    """This process's face pipeline (one per worker, made at its first job)."""
    import cv2

    from rtatl_sdk.face import FacePipeline

    cv2.setNumThreads(1)
    return FacePipeline(blendshapes=True)


def _face_chunk(job: Job) -> tuple[str, int, int]:
    """Faces of one chunk of records -> one cache part with targets, teacher scores, emotions."""
    from rtatl_sdk.face.pipeline import largest_face

    cache, key, records, aus = job
    pipe = _pipeline()
    rows, skipped = [], {"unreadable": 0, "no face": 0}
    for rec in records:
        try:
            img = load_image(rec.path)  # EXIF orientation applied; any file-name bytes
        except InputError as exc:
            skipped["unreadable"] += 1
            log.warning("%s; skipped", exc)
            continue
        faces = pipe.process(corpus.padded(upscaled(img)))
        if not faces:
            skipped["no face"] += 1
            continue
        f = largest_face(faces)
        t = teacher_scores(f.blendshapes, aus)
        n = len(rows)
        cache_format.write_frame(cache, key, n, f.aligned.image)
        rows.append(FaceRow(n, t, targets.combine(t, rec.emotion, aus, rec.votes), f.aligned.landmarks, f.aligned.matrix, rec))
    _write_rows(cache, key, rows, skipped, aus)
    return key, len(rows), sum(skipped.values())


#: images smaller than this (FER's 48-px faces) are upscaled to ``UPSCALE_TO`` before detection:
#: at 48 px the face detector finds 8 % of them, at 192 px 92 %
MIN_SIDE, UPSCALE_TO = 128, 192


def upscaled(img):
    import cv2

    side = max(img.shape[:2])
    if side >= MIN_SIDE:
        return img
    s = UPSCALE_TO / side
    return cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_CUBIC)


#: a single crowd label as the expression head's target: one-hot, smoothed (one rater is noisy)
LABEL_SMOOTHING = 0.1


def expression_votes(rec) -> np.ndarray:
    """(E,) vote shares of a record: its crowd votes, a smoothed one-hot of its single label, or -1."""
    if rec.votes is not None:
        return np.asarray(rec.votes, np.float32)
    if rec.emotion in EMOTIONS:
        v = np.full(len(EMOTIONS), LABEL_SMOOTHING / len(EMOTIONS), np.float32)
        v[EMOTIONS.index(rec.emotion)] += 1.0 - LABEL_SMOOTHING
        return v
    return np.full(len(EMOTIONS), -1.0, np.float32)


def _write_rows(cache: Path, key: str, rows: list[FaceRow], skipped: dict, aus, has_flow=None, intensities=None) -> None:
    """A part of the recipe's cache; ``intensities`` (n, N) 0-5 or -1 unknown, by default 5 x the
    combined target (``targets.intensity``)."""
    n = len(rows)
    tgt = np.array([r.target for r in rows], np.float32).reshape(n, len(aus))
    teacher = np.array([r.teacher for r in rows], np.float32).reshape(n, len(aus))
    if intensities is None:
        intensities = targets.intensity(tgt)
    cache_format.write_part(cache, cache_format.Part(
        key=key, subject=key, sequence=key, frames=[r.frame for r in rows], labels=targets.hard(tgt),
        landmarks=[r.landmarks for r in rows], matrices=[r.matrix for r in rows],
        has_flow=has_flow if has_flow is not None else [False] * n, skipped=skipped, targets=tgt,
        extra={"teacher": teacher, "intensities": np.asarray(intensities, np.float32).reshape(n, len(aus)),
               "emotion": np.array([r.record.emotion for r in rows], dtype=str),
               "identity": np.array([r.record.identity for r in rows], dtype=str),
               "source": np.array([str(r.record.path) for r in rows], dtype=str),
               "votes": np.array([expression_votes(r.record) for r in rows], np.float32).reshape(n, len(EMOTIONS))}))


def _run_jobs(fn, jobs, workers: int, desc: str) -> list:
    from tqdm import tqdm

    if not jobs:
        return []
    if workers <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap_unordered(fn, jobs), total=len(jobs), desc=desc))


def _pending(cache: Path, prefix: str, records: list, chunk: int, aus) -> list[Job]:
    """The jobs of the chunks of ``records`` whose part is not in ``cache`` yet (the unit of resumption)."""
    jobs = []
    for c in range(0, len(records), chunk):
        key = f"{prefix}_{c // chunk:04d}"
        if not cache_format.has_part(cache, key):
            jobs.append(Job(cache, key, records[c:c + chunk], tuple(aus)))
    return jobs


# ---------------------------------------------------------------- media (video frames with flow)
def _faces_of_video(pipe, path: Path, limit: int | None = None):
    from rtatl_sdk.face.pipeline import largest_face
    from rtatl_sdk.stream.video import iter_frames

    out = []
    for fr in iter_frames(path):
        if limit is not None and fr.index >= limit:
            break
        if fr.image is None:
            continue
        faces = pipe.process(fr.image)
        if faces:
            out.append((fr.index, fr.image, largest_face(faces)))
    return out


def build_media(media: Path, data: Path, aus, clip_frames: int | None = None) -> dict:
    """Training clip (even frames labelled, odd unlabelled, both with flow), stills, held-out man."""
    from rtatl_sdk import load_image
    from rtatl_sdk.face import FacePipeline

    if cache_format.has_part(data / "heldout", "video"):
        return json.loads((data / "media_counts.json").read_text())
    pipe = FacePipeline(blendshapes=True)
    clip = corpus.FaceRecord(media / TRAIN_VIDEO, f"media/{TRAIN_VIDEO}", "")
    video = _faces_of_video(pipe, media / TRAIN_VIDEO, clip_frames)
    by_index = {i: (img, f) for i, img, f in video}
    rows: dict[str, list] = {"even": [], "odd": []}
    flows: dict[str, list] = {"even": [], "odd": []}
    for i, _img, f in video:
        flow = None
        if i + cache_format.FLOW_STEP in by_index:
            nxt = geometry.warp_to_canvas(by_index[i + cache_format.FLOW_STEP][0], f.aligned.matrix)
            flow = tvl1_flow(f.aligned.image, nxt, FLOW)
        half = "even" if i % 2 == 0 else "odd"
        cache = data / ("train" if half == "even" else "unlabelled")
        cache_format.write_frame(cache, f"clip_{half}", i, f.aligned.image, flow)
        t = teacher_scores(f.blendshapes, aus)
        tgt = targets.combine(t, "", aus) if half == "even" else np.full(len(aus), -1, np.float32)
        rows[half].append(FaceRow(i, t, tgt, f.aligned.landmarks, f.aligned.matrix, clip))
        flows[half].append(flow is not None)
    _write_rows(data / "unlabelled", "clip_odd", rows["odd"], {}, aus, flows["odd"])
    _write_rows(data / "train", "clip_even", rows["even"], {}, aus, flows["even"])
    still_rows = []
    for name in TRAIN_IMAGES:
        for f in pipe.process(load_image(media / name)):
            n = len(still_rows)
            cache_format.write_frame(data / "train", "stills", n, f.aligned.image)
            t = teacher_scores(f.blendshapes, aus)
            still_rows.append(FaceRow(n, t, targets.combine(t, "", aus), f.aligned.landmarks, f.aligned.matrix,
                                      corpus.FaceRecord(media / name, f"media/{name}#{n}", "")))
    _write_rows(data / "train", "stills", still_rows, {}, aus)
    held = _faces_of_video(pipe, media / HELD_VIDEO)
    held_rows = []
    for i, _img, f in held:
        cache_format.write_frame(data / "heldout", "video", i, f.aligned.image)
        t = teacher_scores(f.blendshapes, aus)
        held_rows.append(FaceRow(i, t, targets.combine(t, "", aus), f.aligned.landmarks, f.aligned.matrix,
                                 corpus.FaceRecord(media / HELD_VIDEO, f"media/{HELD_VIDEO}", "")))
    _write_rows(data / "heldout", "video", held_rows, {}, aus)
    pipe.close()
    counts = {"clip_labelled": len(rows["even"]), "clip_unlabelled": len(rows["odd"]), "stills": len(still_rows),
              "heldout_frames": len(held_rows)}
    (data / "media_counts.json").write_text(json.dumps(counts))
    return counts


# ---------------------------------------------------------------- synthetic edits
class EditItem(NamedTuple):
    """One synthetic edit: ``edited`` AUs of the face at ``path`` (``landmarks``, ``target``) by ``strength``."""

    path: Path
    landmarks: np.ndarray
    target: np.ndarray
    edited: tuple[int, ...]
    strength: float
    record: corpus.FaceRecord


def _edit_chunk(job: Job) -> tuple[str, int, int]:
    import cv2

    from ..edits import apply_edit

    cache, key, items, au_set = job
    rows, flows, failed, inten = [], [], 0, []
    for path, pts, tgt, aus, strength, rec in items:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        try:
            out, new_pts, flow = apply_edit(img, pts, aus, strength)
        except cv2.error as exc:  # an edited landmark left the canvas: no exact warp exists
            failed += 1
            log.warning("edit %s of %s failed (%s); skipped", aus, path, str(exc).strip().splitlines()[-1][:80])
            continue
        n = len(rows)
        cache_format.write_frame(cache, key, n, out, flow)
        rows.append(FaceRow(n, np.full(len(au_set), -1, np.float32), targets.edited(tgt, aus, au_set), new_pts, np.eye(2, 3), rec))
        flows.append(True)
        row = np.full(len(au_set), -1.0, np.float32)  # the edited AUs' strength is exact; the others unknown
        row[[au_set.index(a) for a in aus]] = min(5.0, EDIT_INTENSITY * strength)
        inten.append(row)
    _write_rows(cache, key, rows, {"edit failed": failed} if failed else {}, au_set, flows,
                np.array(inten).reshape(len(rows), len(au_set)))
    return key, len(rows), failed


def edit_jobs(cache: Path, n_edits: int, seed: int, aus) -> list[Job]:
    """Edits of training faces without an expression label other than neutral, spread over identities."""
    from ..data.dataset import CacheIndex
    from ..edits import AU_EDITS

    idx = CacheIndex(cache)
    ex = read_extras(cache)
    size = geometry.ALIGNED_SIZE
    inside = ((idx.landmarks >= 4) & (idx.landmarks <= size - 5)).all(axis=(1, 2))  # the warp needs the face in the canvas
    base = np.flatnonzero(np.char.startswith(idx.keys.astype(str), "corpus") & np.isin(ex["emotion"], ["neutral", ""]) & inside)
    if len(base) == 0:
        log.warning("%s: no neutral or unlabelled training face lies wholly inside the canvas: no synthetic edits", cache)
        return []
    rng = np.random.default_rng([seed, 17])
    chosen = rng.choice(base, size=min(n_edits, len(base)), replace=False)
    editable = [a for a in aus if a in AU_EDITS]
    items = []
    for i in chosen:
        edited = tuple(int(a) for a in rng.choice(editable, size=int(rng.integers(1, 3)), replace=False))
        rec = corpus.FaceRecord(Path(str(ex["source"][i])), str(ex["identity"][i]), "edit:" + "+".join(map(str, edited)))
        items.append(EditItem(idx.image_path(i), idx.landmarks[i], idx.targets[i], edited, float(rng.uniform(0.8, 1.6)), rec))
    return _pending(cache, "edits", items, CHUNK, aus)


def read_extras(cache: Path) -> dict[str, np.ndarray]:
    """The recipe's per-face arrays (teacher, emotion, identity, source) in CacheIndex order."""
    out: dict[str, list] = {"teacher": [], "emotion": [], "identity": [], "source": []}
    for part in cache_format.iter_parts(cache):
        n = len(part)
        for k in out:
            out[k].append(part.extra[k] if k in part.extra else
                          np.full((n, part.labels.shape[1]) if k == "teacher" else n, -1 if k == "teacher" else ""))
    return {k: np.concatenate(v) for k, v in out.items()}


def data_once(rec: Recipe, data: Path, summary_path: Path, **kw) -> dict:
    """The recipe's data under ``data``, built once: the summary of an earlier build (the faces
    folder and cap it was built from must be ``rec``'s), or a new build (``build_data``, ``kw``
    passed on) whose summary is written to ``summary_path`` when it is complete."""
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        _check_built_data(rec, summary)
        return summary
    summary = build_data(rec, data, **kw)
    summary["data_seconds"] = round(time.time() - rec.started)
    summary["faces_folder"] = str(rec.faces.resolve())
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def build_data(rec: Recipe, data: Path, half: str | None = None, half_seed: int = 0) -> dict:
    """Build the caches under ``data`` (the module says what each holds) from ``rec``'s faces and
    media, for its AU set, split, edits, limits and cap. ``half``: only the people of that identity
    half of the faces (``corpus.identity_half``), for a pretrained start that no evaluation person
    has seen."""
    aus, seed, limit, cap = rec.au_set, rec.seed, rec.limit, rec.cap_per_emotion
    records, counts = corpus.read_corpus(rec.faces)
    if half is not None:
        if half not in corpus.HALVES:
            raise InputError(f"half {half!r}", f"is not one of {', '.join(corpus.HALVES)}")
        records = [r for r in records if corpus.identity_half(r.identity, half_seed) == half]
        counts = {**counts, "half": half, "half_seed": half_seed, "half_images": len(records)}
    if limit:
        records = records[:limit]
    train, val = corpus.split_records(records, rec.val_fraction, seed)
    test = corpus.test_records(records)
    train = corpus.cap_per_emotion(train, cap, seed)
    shared = {r.identity for r in train} & {r.identity for r in val}
    assert not shared, shared  # the split is by identity; a failure here is a bug, not bad data
    names = ("train", "unlabelled", "val", "heldout") + (("test",) if test else ())
    for name in names:
        cache_format.write_manifest(data / name, "DEFAULT", aus, FLOW)
    jobs = _pending(data / "train", "corpus", train, CHUNK, aus) + _pending(data / "val", "corpus", val, CHUNK, aus) \
        + _pending(data / "test", "corpus", test, CHUNK, aus)
    results = _run_jobs(_face_chunk, jobs, rec.workers, "faces")
    media_counts = build_media(rec.media, data, aus, rec.clip_frames)
    results += _run_jobs(_edit_chunk, edit_jobs(data / "train", rec.edits, seed, aus), rec.workers, "edits")
    for key, _, skipped in results:
        if skipped:
            log.info("%s: %d images without a usable face", key, skipped)
    summary = {"corpus": counts, "train_identities": len({r.identity for r in train}),
               "val_identities": len({r.identity for r in val}), "train_images": len(train), "val_images": len(val),
               "test_images": len(test), "cap_per_emotion": cap, **media_counts}
    for name in ("train", "val") + (("test",) if test else ()):
        skipped = 0
        for part in cache_format.iter_parts(data / name, "corpus_*", extra=False):
            skipped += sum(part.skipped.values())
        summary[f"{name}_no_face"] = skipped
    from ..data.dataset import CacheIndex

    for split in ("train", "val") + (("test",) if test else ()):
        summary[f"{split}_faces"] = sum(len(p) for p in cache_format.iter_parts(data / split, extra=False))
    for split in ("train", "val"):  # nothing to train on, or nothing to fit thresholds and judge on
        if not summary[f"{split}_faces"]:
            raise InputError(f"--faces {rec.faces}", f"the {split} split has no usable face ({summary[f'{split}_images']} "
                             f"images, {summary.get(f'{split}_no_face', 0)} without a face found); give a folder of "
                             "face images of several people")
    summary["edits"] = int(sum(np.char.startswith(CacheIndex(data / "train").keys.astype(str), "edits")))
    return summary


# ---------------------------------------------------------------- evaluation and selection
#: the neutral rates per AU of the trade-off curve in the report (thresholds fitted on half of the
#: validation people, judged on the other half)
TRADEOFF_RATES = (0.02, 0.03, 0.05, 0.08, 0.12)
def validate(model, data: Path, thresholds=None, neutral_rate=measures.MAX_NEUTRAL_RATE,
             curve: bool = False, outputs: dict | None = None, split: str = "val") -> dict:
    """Student and teacher on the validation people, through the same measures; thresholds fitted
    under ``neutral_rate`` (at most that share of neutral faces called present; one rate, or one
    per AU) unless given. ``curve``: also the held-apart trade-off (``measures.tradeoff``) for
    ``TRADEOFF_RATES`` and for ``neutral_rate`` itself. ``outputs``: the network's outputs on the
    split (``evaluate.predict_outputs``), where the caller has them already."""
    from ..data.dataset import CacheIndex
    from ..evaluate import intensity_scores, predict_outputs

    idx = CacheIndex(data / split)
    aus = idx.aus
    out = outputs if outputs is not None else predict_outputs(model, data / split, aus)
    probs = out["probs"]
    ex = read_extras(data / split)
    teacher = ex["teacher"]
    teacher_labels = (teacher >= TEACHER_THRESHOLD).astype(np.int8)
    target_labels = idx.labels
    why = None
    if thresholds is None:
        thresholds, why = measures.fit_thresholds(probs, target_labels, neutral=ex["emotion"] == "neutral",
                                                  max_neutral_rate=neutral_rate)
    student = measures.judge(probs, thresholds, ex["emotion"], ex["identity"], aus, teacher_labels, target_labels)
    if "intensity" in out:  # intensity against the teacher's strength, per AU
        strength = np.where(teacher >= 0, 5.0 * np.clip(teacher, 0, 1), -1.0)
        per = intensity_scores(out["intensity"], strength)
        student["intensity_pearson_vs_teacher"] = {f"AU{a:02d}": round(r["pearson"], 3) for a, r in zip(aus, per)}
        student["intensity_mae_vs_teacher"] = {f"AU{a:02d}": round(r["mae"], 3) for a, r in zip(aus, per)}
    teach = measures.judge(teacher, [TEACHER_THRESHOLD] * len(aus), ex["emotion"], ex["identity"], aus,
                           teacher_labels, target_labels)
    rates = np.broadcast_to(np.asarray(neutral_rate, np.float64), (len(aus),))
    res = {"student": student, "teacher": teach, "thresholds": list(thresholds), "threshold_reasons": why,
           "neutral_rate": {f"AU{a:02d}": float(r) for a, r in zip(aus, rates)}}
    if curve:
        chosen = ("the card's: " + describe_rates(float(np.median(rates)),
                                                  {a: float(r) for a, r in zip(aus, rates)}, aus), list(rates))
        res["tradeoff"] = measures.tradeoff(probs, ex["emotion"], ex["identity"], aus, teacher_labels, target_labels,
                                            (*TRADEOFF_RATES, chosen))
    return res


def expression_reports(outputs: dict, data: Path, split: str) -> dict:
    """The expression head against the crowd on ``split``, per source folder of the corpus
    (``lfw``: one rater; ``fer``: ten votes per face)."""
    from ..data.dataset import CacheIndex

    if "emotions" not in outputs:
        return {}
    votes = CacheIndex(data / split).votes
    ident = read_extras(data / split)["identity"]
    out = {}
    for src in sorted({str(i).split("/", 1)[0] for i in ident}):
        m = np.char.startswith(ident.astype(str), src + "/")
        rep = measures.expression_report(outputs["emotions"][m], votes[m], EMOTIONS)
        if rep:
            out[src] = rep
    return out


#: validation people's neutral faces edited one AU at a time (``build_val_edits``)
VAL_EDIT_FACES = 60


def build_val_edits(data: Path, n_faces: int = VAL_EDIT_FACES, seed: int = 0) -> Path:
    """``data/val_edits``: ``n_faces`` neutral faces of the validation people, each edited once per
    AU of the set that ``training/edits.py`` can edit (strength 1, exact labels). Built once."""
    from ..data.dataset import CacheIndex
    from ..edits import AU_EDITS

    out = data / "val_edits"
    idx, ex = CacheIndex(data / "val"), read_extras(data / "val")
    cache_format.write_manifest(out, "DEFAULT", idx.aus, FLOW)
    size = geometry.ALIGNED_SIZE
    inside = ((idx.landmarks >= 4) & (idx.landmarks <= size - 5)).all(axis=(1, 2))  # the warp needs the face inside
    base = np.flatnonzero((ex["emotion"] == "neutral") & inside)
    chosen = np.sort(np.random.default_rng([seed, 23]).choice(base, size=min(n_faces, len(base)), replace=False))
    items = [EditItem(idx.image_path(i), idx.landmarks[i], idx.targets[i], (au,), 1.0,
                      corpus.FaceRecord(Path(str(ex["source"][i])), str(ex["identity"][i]), f"edit:{au}"))
             for i in chosen for au in idx.aus if au in AU_EDITS]
    _run_jobs(_edit_chunk, _pending(out, "edits", items, CHUNK, idx.aus), 1, "validation edits")
    return out


def edit_contrasts(model, data: Path) -> dict[str, dict]:
    """Per editable AU, on the validation people (never trained on; the model trained on edits of
    other people): the AUC of the AU's score on its edited faces over the same faces unedited, the
    share of faces whose score rises, and the faces. Exact labels, but synthetic: it says whether
    the model reads the edit's movement, not how it scores FACS-coded faces."""
    from ..data.dataset import CacheIndex
    from ..evaluate import predict_cache

    edits = data / "val_edits"
    if not (edits.is_dir() and len(CacheIndex(edits))):
        return {}
    aus = CacheIndex(edits).aus
    pe, _ = predict_cache(model, edits, None, aus)
    pv, _ = predict_cache(model, data / "val", None, aus)
    exe, exv = read_extras(edits), read_extras(data / "val")
    row_of = {s: i for i, s in enumerate(exv["source"])}
    orig = np.array([row_of[s] for s in exe["source"]])
    out = {}
    for j, au in enumerate(aus):
        m = exe["emotion"] == f"edit:{au}"
        if m.any():
            a, b = pe[m, j], pv[orig[m], j]
            out[f"AU{au:02d}"] = {"auc": round(measures.auc(a, b), 4), "share_rising": round(float((a > b).mean()), 4),
                                  "faces": int(m.sum())}
    return out


def edit_table(contrasts: dict[str, dict]) -> str:
    if not contrasts:
        return ""
    aus = list(contrasts)
    n = max(c["faces"] for c in contrasts.values())
    return (f"Validation people's neutral faces edited one AU at a time (`training/edits.py`, strength 1; up to {n} "
            "faces per AU), student only:\n\n| AU | " + " | ".join(a[2:] for a in aus) + " |\n|---|" + "---|" * len(aus)
            + "\n| AUC edited > unedited | " + " | ".join(f"{contrasts[a]['auc']:.2f}" for a in aus) + " |"
            + "\n| share of faces rising | " + " | ".join(f"{contrasts[a]['share_rising']:.2f}" for a in aus) + " |")


def heldout_margin(model, data: Path, thresholds) -> dict:
    """The held-out man of ``single_face.mp4``: AU12 and the AUs called on his neutral and smiling
    frames, and his top expression on each (where the network has the expression head)."""
    from ..data.dataset import CacheIndex
    from ..evaluate import predict_outputs

    idx = CacheIndex(data / "heldout")
    out = predict_outputs(model, data / "heldout", idx.aus)
    probs = out["probs"]
    frames = idx.frames
    j = idx.aus.index(12)
    smile, neutral = frames >= SMILE_FROM, frames < NEUTRAL_UNTIL
    present = probs >= np.asarray(thresholds)
    rep = {"au12_neutral_mean": round(float(probs[neutral, j].mean()), 4),
           "au12_smiling_mean": round(float(probs[smile, j].mean()), 4),
           "neutral_frames_present_mean": round(float(present[neutral].sum(1).mean()), 3)}
    if "emotions" in out:
        top = np.asarray(EMOTIONS)[out["emotions"].argmax(1)]
        for name, m in (("neutral_frames", neutral), ("smiling_frames", smile)):
            names, counts = np.unique(top[m], return_counts=True)
            rep[f"top_expression_{name}"] = {str(k): int(v) for k, v in zip(names, counts)}
    return rep


def _score(entry: dict) -> float:
    """Model selection: the mean prototype-AU AUC; F1 against the targets where no contrast exists."""
    return entry["auc_mean"] if entry["auc_mean"] is not None else entry["f1_vs_targets_mean"]


def train_and_select(rec: Recipe, data: Path) -> tuple[Path, list[dict]]:
    """Train in segments of ``--eval-every`` steps; after each, validate; keep the best (mean AUC)."""
    from ..checkpoint import model_from_checkpoint
    from ..train import train

    sel_path = rec.out / "selection.json"
    history = json.loads(sel_path.read_text()) if sel_path.is_file() else []
    best = rec.out / "best.ckpt"
    first = 0
    if rec.start_from:
        first = _start(rec, data, history, best)
        sel_path.write_text(json.dumps(history, indent=1))
    done = {h["step"] for h in history}
    for stop in runs.segments(rec.steps, rec.eval_every):
        if stop in done or stop <= first:
            continue
        res = train(rec.train_config(data, stop), progress=rec.progress)
        model, _ = model_from_checkpoint(Path(res["checkpoint"]))
        rep = validate(model, data)["student"]
        entry = {"step": stop, "auc_mean": rep["auc_mean"], "neutral_present": rep["neutral_present"],
                 "f1_vs_targets_mean": rep["f1_vs_targets_mean"], "seconds": round(time.time() - rec.started)}
        log.info("validation at step %d: %s", stop, entry)
        if not history or _score(entry) > max(_score(h) for h in history) or not best.is_file():
            shutil.copyfile(res["checkpoint"], best)
            entry["best"] = True
        history.append(entry)
        sel_path.write_text(json.dumps(history, indent=1))
    return best, history


#: the model settings a --start-from checkpoint must share with the recipe's graph
GRAPH_KEYS = ("variant", "d", "heads", "ff", "roi_cells", "roi_vector", "work_size", "intensity", "emotions", "relation",
              "g_width", "dc_width", "flow_width")


def _start(rec: Recipe, data: Path, history: list[dict], best: Path) -> int:
    """``--start-from``: training goes on from that checkpoint (a run of the same graph; its
    weights, optimiser state and step). Its own validation is the first entry of the selection, so
    the continued training is kept only where it does better. Returns the start step."""
    from rtatl_sdk.io.files import file_sha256

    from ..checkpoint import model_from_checkpoint

    src = Path(rec.start_from)
    if not src.is_file():
        raise InputError(f"--start-from {src}", "no such checkpoint")
    model, state = model_from_checkpoint(src)
    want = rec.train_config(data, rec.steps).model.model_dump(mode="json")
    differ = [f"{k}={state['config']['model'].get(k)!r} (this recipe: {want[k]!r})" for k in GRAPH_KEYS
              if state["config"]["model"].get(k) != want[k]]
    if list(state["aus"]) != list(rec.au_set):
        differ.insert(0, f"AUs {state['aus']} (this recipe: {list(rec.au_set)})")
    if differ:
        raise InputError(f"--start-from {src}", "is another model's checkpoint: " + "; ".join(differ))
    step = int(state["step"])
    if step >= rec.steps:
        raise InputError(f"--start-from {src}", f"is at step {step}, not before --steps {rec.steps}")
    last = rec.out / "train" / "last.ckpt"
    if not last.is_file():
        last.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, last)
    if not any(h.get("start") for h in history):
        rep = validate(model, data)["student"]
        shutil.copyfile(src, best)
        history.insert(0, {"step": step, "start": str(src), "start_sha256": file_sha256(src),
                           "auc_mean": rep["auc_mean"], "neutral_present": rep["neutral_present"],
                           "f1_vs_targets_mean": rep["f1_vs_targets_mean"], "seconds": round(time.time() - rec.started),
                           "best": True})
    return step


def finish(rec: Recipe, data: Path, best: Path, history: list[dict], data_summary: dict) -> dict:
    """The published outputs (``operating``) and the report on the validation people, the test
    split and the held-out man; the final checkpoint carries the card's parameters."""
    from ..checkpoint import model_from_checkpoint, save_checkpoint

    model, state = model_from_checkpoint(best)
    val, test, op = judge_and_publish(model, data, rec)
    heldout = heldout_margin(model, data, op["thresholds"])
    report = {"step": state["step"], "selection": history, "data": data_summary, "validation": val, "test": test,
              "heldout_man": heldout, "seconds_total": round(time.time() - rec.started)}
    (rec.out / "report.json").write_text(json.dumps(report, indent=1))
    (rec.out / "report.md").write_text(report_markdown(val, test))
    card_state(state, rec, data_summary, history, val, test, op, model)
    save_checkpoint(rec.out / "model.ckpt", state)
    return report


def judge_and_publish(model, data: Path, rec: Recipe) -> tuple[dict, dict | None, dict]:
    """(validation report, test-split report or None, the operating point's card parameters)."""
    from ..data.dataset import CacheIndex
    from ..evaluate import predict_outputs

    strict_rates = neutral_rates(rec.neutral_rate, rec.neutral_rate_au, rec.au_set)
    outputs = predict_outputs(model, data / "val", rec.au_set)
    idx, ex = CacheIndex(data / "val"), read_extras(data / "val")
    op = operating.fit(outputs, idx.labels, ex["emotion"], rec.au_set, rec.budget, strict_rates)
    held = operating.held_apart(outputs, idx.labels, idx.targets, ex["emotion"], ex["identity"], rec.au_set, rec.budget,
                                rec.seed)
    val = validate(model, data, thresholds=op["thresholds"], outputs=outputs)
    strict = validate(model, data, neutral_rate=strict_rates, curve=True, outputs=outputs)
    val["strict"] = {k: strict[k] for k in ("thresholds", "student", "tradeoff", "neutral_rate")}
    val["operating_point"] = {k: v for k, v in op.items() if k != "thresholds"}
    val["held_apart"] = held
    val["expressions"] = expression_reports(outputs, data, "val")
    build_val_edits(data, seed=rec.seed)
    val["student"]["edit_contrasts"] = edit_contrasts(model, data)
    test = None
    if (data / "test").is_dir() and any(len(p) for p in cache_format.iter_parts(data / "test", extra=False)):
        test_out = predict_outputs(model, data / "test", rec.au_set)
        test = validate(model, data, thresholds=op["thresholds"], outputs=test_out, split="test")
        test["expressions"] = expression_reports(test_out, data, "test")
    return val, test, op


def report_markdown(val: dict, test: dict | None) -> str:
    s, t, strict = val["student"], val["teacher"], val["strict"]
    parts = ["## Validation people (thresholds: the card's operating point)", measures.table(s, t),
             operating.tradeoff_table(val["held_apart"]), "## The strict operating point (`thresholds=\"strict\"`)",
             measures.table(strict["student"], t), measures.tradeoff_table(strict["tradeoff"]),
             edit_table(s["edit_contrasts"])]
    for src, rep in val["expressions"].items():
        parts.append(measures.expression_table(rep, f"Expressions, validation ({src})"))
    if test is not None:
        parts += ["## Test split (never used for training, selection or fitting)", measures.table(test["student"], test["teacher"])]
        parts += [measures.expression_table(rep, f"Expressions, test ({src})") for src, rep in test["expressions"].items()]
    return "\n\n".join(x for x in parts if x) + "\n"


def card_state(state: dict, rec: Recipe, data_summary: dict, history: list[dict], val: dict, test: dict | None, op: dict,
               model) -> None:
    """What the checkpoint carries to the card: the operating point, calibration, rest levels,
    expression classes, metrics (numbers only), training data, terms and notes."""
    s, t, c = val["student"], val["teacher"], val["held_apart"]["chosen"]
    state["thresholds"] = [float(x) for x in op["thresholds"]]
    state["thresholds_strict"] = op["thresholds_strict"]
    state["calibration"] = op["calibration"]
    if "intensity_rest" in op:
        state["intensity_rest"] = op["intensity_rest"]
    if getattr(model.backbone, "emotions", 0):
        state["emotions"] = list(EMOTIONS)
    metrics = {"val_auc_mean": s["auc_mean"], "teacher_val_auc_mean": t["auc_mean"],
               "val_contrast_auc": {k: v["auc"] for k, v in s["contrasts"].items()},
               "teacher_val_contrast_auc": {k: v["auc"] for k, v in t["contrasts"].items()},
               "val_neutral_present": s["neutral_present"], "teacher_val_neutral_present": t["neutral_present"],
               "heldapart_neutral_present": c["neutral_present"], "heldapart_f1_vs_targets_mean": c["f1_vs_targets_mean"],
               "heldapart_present_on_happy": c["present_on_happy"],
               "val_neutral_rate_per_au": op["neutral_rate_per_au"],
               "val_f1_vs_targets": s["f1_vs_targets"], "val_f1_vs_teacher": s["f1_vs_teacher"],
               "val_f1_vs_teacher_mean": s["f1_vs_teacher_mean"],
               "val_au12_rise": s["rise"].get("AU12", {}).get("mean_rise", float("nan")),
               "val_au06_rise": s["rise"].get("AU06", {}).get("mean_rise", float("nan")),
               "val_faces": s["faces"], "val_people": s["people"]}
    if test is not None:
        metrics["test_contrast_auc"] = {k: v["auc"] for k, v in test["student"]["contrasts"].items()}
        metrics["teacher_test_contrast_auc"] = {k: v["auc"] for k, v in test["teacher"]["contrasts"].items()}
    for split, rep in (("val", val), ("test", test)):
        for src, e in (rep or {}).get("expressions", {}).items():
            metrics[f"expression_{split}_{src}_accuracy"] = e["accuracy"]
            metrics[f"expression_{split}_{src}_recall"] = {k: v for k, v in e["recall"].items() if v is not None}
    state["metrics"] = {k: v for k, v in metrics.items() if v is not None and v == v}  # the card holds numbers only
    d = data_summary
    state["training_data"] = (
        f"{d['train_faces']} aligned faces: {d['train_images']} images of the face corpus (LFW crops with crowd emotion "
        f"labels, FER faces with ten crowd votes each, CC BY portraits), {d['clip_labelled']} + {d['stills']} faces of "
        f"the project's media, {d['edits']} synthetic AU edits; {d['clip_unlabelled']} unlabelled clip frames. Targets: "
        "MediaPipe-blendshape teacher soft scores (AU6 also from the smile), emotion priors from the crowd's labels and "
        "votes, exact labels of the edits; expressions: the crowd's vote shares. Not BP4D/DISFA.")
    state["licence"] = "research use only (see notes)"
    if rec.intensity:
        state["intensity_scale"] = INTENSITY_SCALE
    dist = data_summary.get("distilled")
    also = (f", and (weight {dist['weight']}) from the outputs of {Path(dist['model']).name} "
            f"(sha256 {dist['sha256'][:12]})" if dist else "")
    start = next((h for h in history if h.get("start")), None)
    init = (f"training continued from {Path(start['start']).name} at step {start['step']}" if start
            else "ResNet-18 from random init")
    state["notes"] = (TERMS + f" Distilled from a blendshape teacher{also}; {init}; variant {rec.variant}; "
                      f"{rec.graph_note()}. Thresholds, calibration and rest levels: {s['faces']} faces of {s['people']} "
                      f"validation people never trained on (the best mean F1 against the targets with at most "
                      f"{rec.budget} AUs called per neutral face in all; strict: at most "
                      f"{describe_rates(rec.neutral_rate, rec.neutral_rate_au, rec.au_set)} of neutral faces per AU). Not a FACS benchmark result.")


def _parser() -> argparse.ArgumentParser:
    # defaults and ranges live on ``spec.Recipe``: an option not given is left out and the Recipe's default applies
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 argument_default=argparse.SUPPRESS)
    ap.add_argument("--faces", type=Path, help="folder of face images (see corpus.py; default ../shared/faces)")
    ap.add_argument("--media", type=Path, help="the project's real media folder (default media/)")
    ap.add_argument("--out", type=Path, help="the run's folder (default runs/default)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--unlabelled-batch", type=int)
    ap.add_argument("--ff", type=int)
    ap.add_argument("--edits", type=int)
    ap.add_argument("--val-fraction", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workers", type=int, help="processes for the face pipeline and the edits")
    ap.add_argument("--limit", type=int, help="use only the first N images of --faces (smoke runs)")
    ap.add_argument("--clip-frames", type=int, help="use only the first N frames of the training clip")
    ap.add_argument("--aus", help="AU set: BP4D (12, default model v1's) or OPENFACE (OpenFace 2.2's 18, the shipped v2's)")
    ap.add_argument("--intensity", action="store_true", help="train the intensity head on the teacher's strength (0-5)")
    ap.add_argument("--crop-prob", type=float,
                    help="RoII: share of labelled images whitened (0: unlabelled only, the RoII diagnosis's finding; "
                         "the paper's setting is 0.5)")
    ap.add_argument("--budget", type=float,
                    help="the operating point: best mean F1 with at most this many AUs called per neutral face in all")
    ap.add_argument("--neutral-rate", type=float,
                    help="the strict operating point: at most this share of the validation people's neutral faces called present per AU")
    ap.add_argument("--neutral-rate-au", nargs="*", metavar="AU=RATE", help="other rates for some AUs (default: AU06=0.08 AU12=0.08; give none for one rate)")
    ap.add_argument("--graph", choices=sorted(GRAPHS),
                    help="network size: the shipped default model's graph, or a lighter one (128-px trunk input, "
                         "6x6 RoI cells, d 64) for speed")
    ap.add_argument("--distil-from", type=Path, metavar="ONNX",
                    help="blend the training targets with this exported model's outputs (training.recipes.distil)")
    ap.add_argument("--distil-weight", type=float, help="weight of --distil-from's outputs (default 0.5)")
    ap.add_argument("--start-from", type=Path, metavar="CKPT",
                    help="go on training from this training checkpoint of the same graph (its step counts towards --steps)")
    ap.add_argument("--emotions", action="store_true",
                    help="train the expression head (eight classes) on the corpus's crowd votes and labels")
    ap.add_argument("--variant", choices=("rtatl", "backbone"),
                    help="rtatl: both auxiliary tasks (RoI inpainting, flow); backbone: none (the ablation)")
    ap.add_argument("--cap-per-emotion", type=int, metavar="N",
                    help="at most N crowd-voted training faces per plurality emotion (FER's neutral and happy faces "
                         "outnumber its disgust faces 50 to 1)")
    ap.add_argument("--data-only", action="store_true", help="build (or complete) OUT/data and stop")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def _check_built_data(rec: Recipe, summary: dict) -> None:
    """Refuse a ``--out`` whose data were built from another faces folder or cap (they would be
    trained on silently)."""
    built = {"faces": summary.get("faces_folder"), "cap_per_emotion": summary.get("cap_per_emotion", None)}
    asked = {"faces": str(rec.faces.resolve()), "cap_per_emotion": rec.cap_per_emotion}
    differ = [f"--{k.replace('_', '-')} {built[k]} (asked: {asked[k]})" for k in built
              if k in summary or (k == "faces" and "faces_folder" in summary) if built[k] != asked[k]]
    if differ:
        raise InputError(f"--out {rec.out}", "its data were built with other settings (" + "; ".join(differ)
                         + "): use another --out, or delete its data to rebuild them")


def run(rec: Recipe) -> dict | None:
    """The recipe: data (built once, resumable), training in segments with validation, the
    published outputs and the report. Returns the report (None with ``data_only``)."""
    for name in ("faces", "media"):
        if not getattr(rec, name).is_dir():
            raise InputError(f"--{name} {getattr(rec, name)}", "not a folder")
    data = rec.out / "data"
    summary = data_once(rec, data, rec.out / "data_summary.json")
    if rec.distil_from is not None:
        summary["distilled"] = distil.distil_cache(data / "train", rec.distil_from, rec.distil_weight, rec.au_set)
    log.info("data: %s", summary)
    if rec.data_only:
        print(json.dumps(summary))
        return None
    best, history = train_and_select(rec, data)
    return finish(rec, data, best, history, summary)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        rec = Recipe.parse(vars(_parser().parse_args(argv)), "default_model")
        report = run(rec)
    except RTATLError as exc:
        print(f"default_model: error: {exc}", file=sys.stderr)
        return 2
    if report is not None:
        print((rec.out / "report.md").read_text())
        print(json.dumps({"checkpoint": str(rec.out / "model.ckpt"), "heldout_man": report["heldout_man"],
                          "seconds_total": report["seconds_total"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
