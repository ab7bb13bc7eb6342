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
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from rtatl_sdk import load_image
from rtatl_sdk.contract import geometry
from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.contract.emotions import EMOTIONS
from rtatl_sdk.errors import InputError, RTATLError

from ..config import COMPACT_GRAPH
from ..data import cache as cache_format
from ..flow import FlowParams, tvl1_flow
from ..teacher import TEACHER_THRESHOLD, teacher_scores
from . import corpus, distil, measures, operating, targets

log = logging.getLogger("rtatl.recipe")
AUS = AU_SETS["BP4D"]  #: the recipe's AU set (``--aus``; ``set_aus`` before anything is built)
#: what the default model's 0-5 intensities mean (``--intensity``): not FACS A-E coding
INTENSITY_SCALE = ("0-5: 5 x the AU's training target (the blendshape teacher's score, AU6 also from the smile, raised by "
                   "the crowd's emotion votes, pulled down on neutral faces) and 4 x a synthetic edit's strength; "
                   "anchored at rest (a crowd-neutral face of the validation people reads 0); not FACS A-E intensity coding")
#: an edit of strength s gives its AUs the intensity min(5, EDIT_INTENSITY * s)
EDIT_INTENSITY = 4.0


def set_aus(name: str) -> tuple[int, ...]:
    """Use AU set ``name`` (``rtatl_sdk.contract.au.AU_SETS``: BP4D or OPENFACE) for this process."""
    global AUS
    if name.upper() not in AU_SETS:
        raise InputError(f"--aus {name}", f"is not one of {', '.join(AU_SETS)}")
    AUS = AU_SETS[name.upper()]
    return AUS
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
_W: dict = {}


def _init_worker(aus: tuple[int, ...] | None = None) -> None:
    """A worker's face pipeline, and the parent's AU set (a spawned process starts with the default)."""
    global AUS
    import cv2

    from rtatl_sdk.face import FacePipeline

    if aus is not None:
        AUS = tuple(aus)
    cv2.setNumThreads(1)
    _W["pipe"] = FacePipeline(blendshapes=True)


def _face_chunk(job) -> tuple[str, int, int]:
    """Faces of one chunk of records -> one cache part with targets, teacher scores, emotions."""
    from rtatl_sdk.face.pipeline import largest_face

    cache, key, records = job
    pipe = _W["pipe"]
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
        t = teacher_scores(f.blendshapes, AUS)
        n = len(rows)
        cache_format.write_frame(cache, key, n, f.aligned.image)
        rows.append((n, t, targets.combine(t, rec.emotion, AUS, rec.votes), f.aligned.landmarks, f.aligned.matrix, rec))
    _write_rows(cache, key, rows, skipped)
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


def _write_rows(cache: Path, key: str, rows, skipped: dict, has_flow=None, intensities=None) -> None:
    """A part of the recipe's cache; ``intensities`` (n, N) 0-5 or -1 unknown, by default 5 x the
    combined target (``targets.intensity``)."""
    n = len(rows)
    tgt = np.array([r[2] for r in rows], np.float32).reshape(n, len(AUS))
    teacher = np.array([r[1] for r in rows], np.float32).reshape(n, len(AUS))
    if intensities is None:
        intensities = targets.intensity(tgt)
    cache_format.write_part(cache, cache_format.Part(
        key=key, subject=key, sequence=key, frames=[r[0] for r in rows], labels=targets.hard(tgt),
        landmarks=[r[3] for r in rows], matrices=[r[4] for r in rows],
        has_flow=has_flow if has_flow is not None else [False] * n, skipped=skipped, targets=tgt,
        extra={"teacher": teacher, "intensities": np.asarray(intensities, np.float32).reshape(n, len(AUS)),
               "emotion": np.array([r[5].emotion for r in rows], dtype=str),
               "identity": np.array([r[5].identity for r in rows], dtype=str),
               "source": np.array([str(r[5].path) for r in rows], dtype=str),
               "votes": np.array([expression_votes(r[5]) for r in rows], np.float32).reshape(n, -1)}))


def _run_jobs(fn, jobs, workers: int, desc: str) -> list:
    from tqdm import tqdm

    if not jobs:
        return []
    if workers <= 1:
        _init_worker()
        return [fn(j) for j in tqdm(jobs, desc=desc)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, _init_worker, (AUS,)) as pool:
        return list(tqdm(pool.imap_unordered(fn, jobs), total=len(jobs), desc=desc))


def _pending(cache: Path, prefix: str, records: list, chunk: int) -> list:
    jobs = []
    for c in range(0, len(records), chunk):
        key = f"{prefix}_{c // chunk:04d}"
        if not cache_format.has_part(cache, key):
            jobs.append((cache, key, records[c:c + chunk]))
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


def build_media(media: Path, data: Path, clip_frames: int | None = None) -> dict:
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
        t = teacher_scores(f.blendshapes, AUS)
        tgt = targets.combine(t, "", AUS) if half == "even" else np.full(len(AUS), -1, np.float32)
        rows[half].append((i, t, tgt, f.aligned.landmarks, f.aligned.matrix, clip))
        flows[half].append(flow is not None)
    _write_rows(data / "unlabelled", "clip_odd", rows["odd"], {}, flows["odd"])
    _write_rows(data / "train", "clip_even", rows["even"], {}, flows["even"])
    still_rows = []
    for name in TRAIN_IMAGES:
        for f in pipe.process(load_image(media / name)):
            n = len(still_rows)
            cache_format.write_frame(data / "train", "stills", n, f.aligned.image)
            t = teacher_scores(f.blendshapes, AUS)
            still_rows.append((n, t, targets.combine(t, "", AUS), f.aligned.landmarks, f.aligned.matrix,
                               corpus.FaceRecord(media / name, f"media/{name}#{n}", "")))
    _write_rows(data / "train", "stills", still_rows, {})
    held = _faces_of_video(pipe, media / HELD_VIDEO)
    held_rows = []
    for i, _img, f in held:
        cache_format.write_frame(data / "heldout", "video", i, f.aligned.image)
        t = teacher_scores(f.blendshapes, AUS)
        held_rows.append((i, t, targets.combine(t, "", AUS), f.aligned.landmarks, f.aligned.matrix,
                          corpus.FaceRecord(media / HELD_VIDEO, f"media/{HELD_VIDEO}", "")))
    _write_rows(data / "heldout", "video", held_rows, {})
    pipe.close()
    counts = {"clip_labelled": len(rows["even"]), "clip_unlabelled": len(rows["odd"]), "stills": len(still_rows),
              "heldout_frames": len(held_rows)}
    (data / "media_counts.json").write_text(json.dumps(counts))
    return counts


# ---------------------------------------------------------------- synthetic edits
def _edit_chunk(job) -> tuple[str, int, int]:
    import cv2

    from ..edits import apply_edit

    cache, key, items = job
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
        rows.append((n, np.full(len(AUS), -1, np.float32), targets.edited(tgt, aus, AUS), new_pts, np.eye(2, 3), rec))
        flows.append(True)
        row = np.full(len(AUS), -1.0, np.float32)  # the edited AUs' strength is exact; the others unknown
        row[[AUS.index(a) for a in aus]] = min(5.0, EDIT_INTENSITY * strength)
        inten.append(row)
    _write_rows(cache, key, rows, {"edit failed": failed} if failed else {}, flows, np.array(inten).reshape(len(rows), len(AUS)))
    return key, len(rows), failed


def edit_jobs(cache: Path, n_edits: int, seed: int) -> list:
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
    editable = [a for a in AUS if a in AU_EDITS]
    items = []
    for i in chosen:
        aus = tuple(int(a) for a in rng.choice(editable, size=int(rng.integers(1, 3)), replace=False))
        rec = corpus.FaceRecord(Path(str(ex["source"][i])), str(ex["identity"][i]), "edit:" + "+".join(map(str, aus)))
        items.append((idx.image_path(i), idx.landmarks[i], idx.targets[i], aus, float(rng.uniform(0.8, 1.6)), rec))
    return _pending(cache, "edits", items, CHUNK)


def read_extras(cache: Path) -> dict[str, np.ndarray]:
    """The recipe's per-face arrays (teacher, emotion, identity, source) in CacheIndex order."""
    out: dict[str, list] = {"teacher": [], "emotion": [], "identity": [], "source": []}
    for part in cache_format.iter_parts(cache):
        n = len(part)
        for k in out:
            out[k].append(part.extra[k] if k in part.extra else
                          np.full((n, len(AUS)) if k == "teacher" else n, -1 if k == "teacher" else ""))
    return {k: np.concatenate(v) for k, v in out.items()}


def build_data(faces: Path, media: Path, data: Path, val_fraction: float, n_edits: int, seed: int, workers: int,
               limit: int | None = None, clip_frames: int | None = None, half: str | None = None,
               half_seed: int = 0, cap: int | None = None) -> dict:
    """Build the caches under ``data`` (the module says what each holds). ``half``: only the people
    of that identity half of ``faces`` (``corpus.identity_half``), for a pretrained start that no
    evaluation person has seen."""
    records, counts = corpus.read_corpus(faces)
    if half is not None:
        if half not in corpus.HALVES:
            raise InputError(f"half {half!r}", f"is not one of {', '.join(corpus.HALVES)}")
        records = [r for r in records if corpus.identity_half(r.identity, half_seed) == half]
        counts = {**counts, "half": half, "half_seed": half_seed, "half_images": len(records)}
    if limit:
        records = records[:limit]
    train, val = corpus.split_records(records, val_fraction, seed)
    test = corpus.test_records(records)
    train = corpus.cap_per_emotion(train, cap, seed)
    shared = {r.identity for r in train} & {r.identity for r in val}
    assert not shared, shared  # the split is by identity; a failure here is a bug, not bad data
    names = ("train", "unlabelled", "val", "heldout") + (("test",) if test else ())
    for name in names:
        cache_format.write_manifest(data / name, "DEFAULT", AUS, FLOW)
    jobs = _pending(data / "train", "corpus", train, CHUNK) + _pending(data / "val", "corpus", val, CHUNK) \
        + _pending(data / "test", "corpus", test, CHUNK)
    results = _run_jobs(_face_chunk, jobs, workers, "faces")
    media_counts = build_media(media, data, clip_frames)
    results += _run_jobs(_edit_chunk, edit_jobs(data / "train", n_edits, seed), workers, "edits")
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

    summary["train_faces"] = len(CacheIndex(data / "train"))
    summary["val_faces"] = len(CacheIndex(data / "val"))
    if test:
        summary["test_faces"] = len(CacheIndex(data / "test"))
    summary["edits"] = int(sum(np.char.startswith(CacheIndex(data / "train").keys.astype(str), "edits")))
    return summary


# ---------------------------------------------------------------- evaluation and selection
#: the neutral rates per AU of the trade-off curve in the report (thresholds fitted on half of the
#: validation people, judged on the other half)
TRADEOFF_RATES = (0.02, 0.03, 0.05, 0.08, 0.12)
#: the card's thresholds: at most this share of the validation people's neutral faces called present
#: per AU (``--neutral-rate``), except the smile's AUs (``--neutral-rate-au``): the crowd's "neutral"
#: faces often carry a faint smile, and with 2 % for AU06/AU12 too the held-apart half lost AU12
#: on a third of its happy faces (default model v2: 0.64 of them kept at 2-3 %, 0.83 at 8 %)
NEUTRAL_RATE = 0.02
NEUTRAL_RATE_AU = {6: 0.08, 12: 0.08}


def neutral_rates(rate: float, per_au: dict[int, float]) -> list[float]:
    """One neutral rate per AU of the recipe's set."""
    return [float(per_au.get(a, rate)) for a in AUS]


def describe_rates(rate: float, per_au: dict[int, float]) -> str:
    """In words, as the card says it: '2 % per AU (8 % for AU06, AU12)'."""
    extra = {a: r for a, r in per_au.items() if a in AUS and r != rate}
    groups: dict[float, list[str]] = {}
    for a, r in sorted(extra.items()):
        groups.setdefault(r, []).append(f"AU{a:02d}")
    tail = "; ".join(f"{measures.pct(r)} for {', '.join(v)}" for r, v in groups.items())
    return f"{measures.pct(rate)} per AU" + (f" ({tail})" if tail else "")


def parse_rate_overrides(items) -> dict[int, float]:
    """``["AU12=0.08", "6=0.08"]`` -> {12: 0.08, 6: 0.08}; a bad item is an InputError naming it."""
    out = {}
    for item in items or ():
        au, sep, val = str(item).partition("=")
        try:
            a, r = int(au.upper().removeprefix("AU")), float(val)
        except ValueError:
            raise InputError(f"--neutral-rate-au {item}", "must be AU=RATE, for example AU12=0.08") from None
        if not sep or not 0.0 < r < 1.0:
            raise InputError(f"--neutral-rate-au {item}", "must be AU=RATE with RATE between 0 and 1")
        if a not in AUS:
            raise InputError(f"--neutral-rate-au {item}", f"AU{a:02d} is not in the recipe's AU set")
        out[a] = r
    return out


def validate(model, data: Path, thresholds=None, neutral_rate=measures.MAX_NEUTRAL_RATE,
             curve: bool = False, outputs: dict | None = None, split: str = "val") -> dict:
    """Student and teacher on the validation people, through the same measures; thresholds fitted
    under ``neutral_rate`` (at most that share of neutral faces called present; one rate, or one
    per AU) unless given. ``curve``: also the held-apart trade-off (``measures.tradeoff``) for
    ``TRADEOFF_RATES`` and for ``neutral_rate`` itself. ``outputs``: the network's outputs on the
    split (``evaluate.predict_outputs``), where the caller has them already."""
    from ..data.dataset import CacheIndex
    from ..evaluate import intensity_scores, predict_outputs

    out = outputs if outputs is not None else predict_outputs(model, data / split, AUS)
    probs = out["probs"]
    idx = CacheIndex(data / split)
    ex = read_extras(data / split)
    teacher = ex["teacher"]
    teacher_labels = (teacher >= TEACHER_THRESHOLD).astype(np.int8)
    target_labels = idx.labels
    why = None
    if thresholds is None:
        thresholds, why = measures.fit_thresholds(probs, target_labels, neutral=ex["emotion"] == "neutral",
                                                  max_neutral_rate=neutral_rate)
    student = measures.judge(probs, thresholds, ex["emotion"], ex["identity"], AUS, teacher_labels, target_labels)
    if "intensity" in out:  # intensity against the teacher's strength, per AU
        strength = np.where(teacher >= 0, 5.0 * np.clip(teacher, 0, 1), -1.0)
        per = intensity_scores(out["intensity"], strength)
        student["intensity_pearson_vs_teacher"] = {f"AU{a:02d}": round(r["pearson"], 3) for a, r in zip(AUS, per)}
        student["intensity_mae_vs_teacher"] = {f"AU{a:02d}": round(r["mae"], 3) for a, r in zip(AUS, per)}
    teach = measures.judge(teacher, [TEACHER_THRESHOLD] * len(AUS), ex["emotion"], ex["identity"], AUS,
                           teacher_labels, target_labels)
    rates = np.broadcast_to(np.asarray(neutral_rate, np.float64), (len(AUS),))
    res = {"student": student, "teacher": teach, "thresholds": list(thresholds), "threshold_reasons": why,
           "neutral_rate": {f"AU{a:02d}": float(r) for a, r in zip(AUS, rates)}}
    if curve:
        chosen = ("the card's: " + describe_rates(float(np.median(rates)),
                                                  {a: float(r) for a, r in zip(AUS, rates)}), list(rates))
        res["tradeoff"] = measures.tradeoff(probs, ex["emotion"], ex["identity"], AUS, teacher_labels, target_labels,
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
    cache_format.write_manifest(out, "DEFAULT", AUS, FLOW)
    idx, ex = CacheIndex(data / "val"), read_extras(data / "val")
    size = geometry.ALIGNED_SIZE
    inside = ((idx.landmarks >= 4) & (idx.landmarks <= size - 5)).all(axis=(1, 2))  # the warp needs the face inside
    base = np.flatnonzero((ex["emotion"] == "neutral") & inside)
    chosen = np.sort(np.random.default_rng([seed, 23]).choice(base, size=min(n_faces, len(base)), replace=False))
    items = [(idx.image_path(i), idx.landmarks[i], idx.targets[i], (au,), 1.0,
              corpus.FaceRecord(Path(str(ex["source"][i])), str(ex["identity"][i]), f"edit:{au}"))
             for i in chosen for au in AUS if au in AU_EDITS]
    _run_jobs(_edit_chunk, _pending(out, "edits", items, CHUNK), 1, "validation edits")
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
    pe, _ = predict_cache(model, edits, None, AUS)
    pv, _ = predict_cache(model, data / "val", None, AUS)
    exe, exv = read_extras(edits), read_extras(data / "val")
    row_of = {s: i for i, s in enumerate(exv["source"])}
    orig = np.array([row_of[s] for s in exe["source"]])
    out = {}
    for j, au in enumerate(AUS):
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

    out = predict_outputs(model, data / "heldout", AUS)
    probs = out["probs"]
    frames = CacheIndex(data / "heldout").frames
    j = AUS.index(12)
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


#: ``--graph``: "shipped", the compact graph (``config.COMPACT_GRAPH``: it keeps the recipe about
#: an hour on two CPU cores), or "light", for several faces in real time on a CPU: the trunk reads
#: the crop resized to 128 px, RoI maps of 6x6 cells, d = 64 (about 1.5 of the compact graph's 4.8
#: GFLOPs); same recipe, targets and auxiliary tasks. The default model v3 is "light".
GRAPHS = {"shipped": COMPACT_GRAPH,
          "light": {**COMPACT_GRAPH, "roi_cells": 6, "d": 64, "work_size": 128}}


def graph_settings(args) -> dict:
    return GRAPHS[getattr(args, "graph", "shipped")]


def graph_note(args) -> str:
    g = graph_settings(args)
    size = f"the 192-px crop resized to {g['work_size']} px, d = {g['d']}, " if g.get("work_size") else ""
    return f"{size}RoI features of {g['roi_cells']}x{g['roi_cells']} cells (the paper's are 12x12)"


def _train_config(args, data: Path, steps: int):
    from ..config import load_config

    return load_config(None, [
        f"data.cache={data / 'train'}", f"data.unlabelled_cache={data / 'unlabelled'}", "data.fold=null",
        "data.dataset=BP4D", "data.colour_jitter=0.3", "data.greyscale=0.5", "data.blur=0.2", "data.jpeg=0.3",
        "data.scale=0.08", f"model.ff={args.ff}", "optim.balance_labels=true",
        f"model.intensity={'true' if getattr(args, 'intensity', False) else 'false'}", f"data.aus={list(AUS)}",
        f"model.emotions={len(EMOTIONS) if getattr(args, 'emotions', False) else 0}",
        f"model.variant={getattr(args, 'variant', 'rtatl')}",
        # the default model whitens only unlabelled images (the RoII diagnosis: whitening half of the
        # labelled ones cost 0.08 F1); the Table 1 analogue keeps the paper's setting (its args lack it)
        *([f"model.crop_prob={args.crop_prob}"] if getattr(args, "crop_prob", None) is not None else []),
        # the shipped model's graph: 8x8 RoI cells and narrow auxiliary heads (CPU-sized), not the paper's
        *(f"model.{k}={v}" for k, v in graph_settings(args).items()),
        f"optim.steps={steps}", f"optim.batch_size={args.batch}", f"optim.unlabelled_batch_size={args.unlabelled_batch}",
        f"run.out={args.out / 'train'}", f"run.seed={args.seed}", "run.workers=0", "run.log_every=10",
        f"run.ckpt_every={min(50, args.eval_every)}"])


def _score(entry: dict) -> float:
    """Model selection: the mean prototype-AU AUC; F1 against the targets where no contrast exists."""
    return entry["auc_mean"] if entry["auc_mean"] is not None else entry["f1_vs_targets_mean"]


def train_and_select(args, data: Path) -> tuple[Path, list[dict]]:
    """Train in segments of ``--eval-every`` steps; after each, validate; keep the best (mean AUC)."""
    from ..checkpoint import model_from_checkpoint
    from ..train import train

    sel_path = args.out / "selection.json"
    history = json.loads(sel_path.read_text()) if sel_path.is_file() else []
    best = args.out / "best.ckpt"
    first = 0
    if getattr(args, "start_from", None):
        first = _start(args, data, history, best)
        sel_path.write_text(json.dumps(history, indent=1))
    done = {h["step"] for h in history}
    for stop in list(range(args.eval_every, args.steps, args.eval_every)) + [args.steps]:
        if stop in done or stop <= first:
            continue
        res = train(_train_config(args, data, stop), progress=args.progress)
        model, _ = model_from_checkpoint(Path(res["checkpoint"]))
        rep = validate(model, data)["student"]
        entry = {"step": stop, "auc_mean": rep["auc_mean"], "neutral_present": rep["neutral_present"],
                 "f1_vs_targets_mean": rep["f1_vs_targets_mean"], "seconds": round(time.time() - args.t0)}
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


def _start(args, data: Path, history: list[dict], best: Path) -> int:
    """``--start-from``: training goes on from that checkpoint (a run of the same graph; its
    weights, optimiser state and step). Its own validation is the first entry of the selection, so
    the continued training is kept only where it does better. Returns the start step."""
    from rtatl_sdk.io.files import file_sha256

    from ..checkpoint import model_from_checkpoint

    src = Path(args.start_from)
    if not src.is_file():
        raise InputError(f"--start-from {src}", "no such checkpoint")
    model, state = model_from_checkpoint(src)
    want = _train_config(args, data, args.steps).model.model_dump(mode="json")
    differ = [f"{k}={state['config']['model'].get(k)!r} (this recipe: {want[k]!r})" for k in GRAPH_KEYS
              if state["config"]["model"].get(k) != want[k]]
    if list(state["aus"]) != list(AUS):
        differ.insert(0, f"AUs {state['aus']} (this recipe: {list(AUS)})")
    if differ:
        raise InputError(f"--start-from {src}", "is another model's checkpoint: " + "; ".join(differ))
    step = int(state["step"])
    if step >= args.steps:
        raise InputError(f"--start-from {src}", f"is at step {step}, not before --steps {args.steps}")
    last = args.out / "train" / "last.ckpt"
    if not last.is_file():
        last.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, last)
    if not any(h.get("start") for h in history):
        rep = validate(model, data)["student"]
        shutil.copyfile(src, best)
        history.insert(0, {"step": step, "start": str(src), "start_sha256": file_sha256(src),
                           "auc_mean": rep["auc_mean"], "neutral_present": rep["neutral_present"],
                           "f1_vs_targets_mean": rep["f1_vs_targets_mean"], "seconds": round(time.time() - args.t0),
                           "best": True})
    return step


def finish(args, data: Path, best: Path, history: list[dict], data_summary: dict) -> dict:
    """The published outputs (``operating``) and the report on the validation people, the test
    split and the held-out man; the final checkpoint carries the card's parameters."""
    from ..checkpoint import model_from_checkpoint, save_checkpoint

    model, state = model_from_checkpoint(best)
    val, test, op = judge_and_publish(model, data, args)
    heldout = heldout_margin(model, data, op["thresholds"])
    report = {"step": state["step"], "selection": history, "data": data_summary, "validation": val, "test": test,
              "heldout_man": heldout, "seconds_total": round(time.time() - args.t0)}
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    (args.out / "report.md").write_text(report_markdown(val, test))
    card_state(state, args, data_summary, history, val, test, op, model)
    save_checkpoint(args.out / "model.ckpt", state)
    return report


def judge_and_publish(model, data: Path, args) -> tuple[dict, dict | None, dict]:
    """(validation report, test-split report or None, the operating point's card parameters)."""
    from ..data.dataset import CacheIndex
    from ..evaluate import predict_outputs

    rates = getattr(args, "neutral_rate_au", NEUTRAL_RATE_AU)
    strict_rates = neutral_rates(args.neutral_rate, rates)
    outputs = predict_outputs(model, data / "val", AUS)
    idx, ex = CacheIndex(data / "val"), read_extras(data / "val")
    op = operating.fit(outputs, idx.labels, ex["emotion"], AUS, args.budget, strict_rates)
    held = operating.held_apart(outputs, idx.labels, idx.targets, ex["emotion"], ex["identity"], AUS, args.budget,
                                args.seed)
    val = validate(model, data, thresholds=op["thresholds"], outputs=outputs)
    strict = validate(model, data, neutral_rate=strict_rates, curve=True, outputs=outputs)
    val["strict"] = {k: strict[k] for k in ("thresholds", "student", "tradeoff", "neutral_rate")}
    val["operating_point"] = {k: v for k, v in op.items() if k != "thresholds"}
    val["held_apart"] = held
    val["expressions"] = expression_reports(outputs, data, "val")
    build_val_edits(data, seed=args.seed)
    val["student"]["edit_contrasts"] = edit_contrasts(model, data)
    test = None
    if (data / "test").is_dir() and any(True for _ in cache_format.iter_parts(data / "test", extra=False)):
        test_out = predict_outputs(model, data / "test", AUS)
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


def card_state(state: dict, args, data_summary: dict, history: list[dict], val: dict, test: dict | None, op: dict,
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
    if getattr(args, "intensity", False):
        state["intensity_scale"] = INTENSITY_SCALE
    dist = data_summary.get("distilled")
    also = (f", and (weight {dist['weight']}) from the outputs of {Path(dist['model']).name} "
            f"(sha256 {dist['sha256'][:12]})" if dist else "")
    start = next((h for h in history if h.get("start")), None)
    init = (f"training continued from {Path(start['start']).name} at step {start['step']}" if start
            else "ResNet-18 from random init")
    rates = getattr(args, "neutral_rate_au", NEUTRAL_RATE_AU)
    state["notes"] = (TERMS + f" Distilled from a blendshape teacher{also}; {init}; variant {args.variant}; "
                      f"{graph_note(args)}. Thresholds, calibration and rest levels: {s['faces']} faces of {s['people']} "
                      f"validation people never trained on (the best mean F1 against the targets with at most "
                      f"{args.budget} AUs called per neutral face in all; strict: at most "
                      f"{describe_rates(args.neutral_rate, rates)} of neutral faces per AU). Not a FACS benchmark result.")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=Path("../shared/faces"), help="folder of face images (see corpus.py)")
    ap.add_argument("--media", type=Path, default=Path("media"), help="the project's real media folder (media/)")
    ap.add_argument("--out", type=Path, default=Path("runs/default"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--unlabelled-batch", type=int, default=4)
    ap.add_argument("--ff", type=int, default=512)
    ap.add_argument("--edits", type=int, default=2000)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="processes for the face pipeline and the edits")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of --faces (smoke runs)")
    ap.add_argument("--clip-frames", type=int, default=None, help="use only the first N frames of the training clip")
    ap.add_argument("--aus", default="BP4D", help="AU set: BP4D (12, default model v1's) or OPENFACE (OpenFace 2.2's 18, the shipped v2's)")
    ap.add_argument("--intensity", action="store_true", help="train the intensity head on the teacher's strength (0-5)")
    ap.add_argument("--crop-prob", type=float, default=0.0,
                    help="RoII: share of labelled images whitened (0: unlabelled only, the RoII diagnosis's finding; "
                         "the paper's setting is 0.5)")
    ap.add_argument("--budget", type=float, default=measures.NEUTRAL_BUDGET,
                    help="the operating point: best mean F1 with at most this many AUs called per neutral face in all")
    ap.add_argument("--neutral-rate", type=float, default=NEUTRAL_RATE,
                    help="the strict operating point: at most this share of the validation people's neutral faces called present per AU")
    ap.add_argument("--neutral-rate-au", nargs="*", default=[f"AU{a:02d}={r}" for a, r in NEUTRAL_RATE_AU.items()],
                    metavar="AU=RATE", help="other rates for some AUs (default: %(default)s; give none for one rate)")
    ap.add_argument("--graph", choices=sorted(GRAPHS), default="shipped",
                    help="network size: the shipped default model's graph, or a lighter one (128-px trunk input, "
                         "6x6 RoI cells, d 64) for speed")
    ap.add_argument("--distil-from", type=Path, default=None, metavar="ONNX",
                    help="blend the training targets with this exported model's outputs (training.recipes.distil)")
    ap.add_argument("--distil-weight", type=float, default=0.5, help="weight of --distil-from's outputs (default %(default)s)")
    ap.add_argument("--start-from", type=Path, default=None, metavar="CKPT",
                    help="go on training from this training checkpoint of the same graph (its step counts towards --steps)")
    ap.add_argument("--emotions", action="store_true",
                    help="train the expression head (eight classes) on the corpus's crowd votes and labels")
    ap.add_argument("--variant", choices=("rtatl", "backbone"), default="rtatl",
                    help="rtatl: both auxiliary tasks (RoI inpainting, flow); backbone: none (the ablation)")
    ap.add_argument("--cap-per-emotion", type=int, default=None, metavar="N",
                    help="at most N crowd-voted training faces per plurality emotion (FER's neutral and happy faces "
                         "outnumber its disgust faces 50 to 1)")
    ap.add_argument("--data-only", action="store_true", help="build (or complete) OUT/data and stop")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        set_aus(args.aus)
    except RTATLError as exc:
        print(f"default_model: error: {exc}", file=sys.stderr)
        return 2
    for name in ("faces", "media"):
        if not getattr(args, name).is_dir():
            print(f"default_model: error: --{name} {getattr(args, name)}: not a folder", file=sys.stderr)
            return 2
    if not 0.0 < args.neutral_rate < 1.0:
        print(f"default_model: error: --neutral-rate {args.neutral_rate}: must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        args.neutral_rate_au = parse_rate_overrides(args.neutral_rate_au)
    except RTATLError as exc:
        print(f"default_model: error: {exc}", file=sys.stderr)
        return 2
    if args.steps < 1 or args.eval_every < 1:
        print("default_model: error: --steps and --eval-every must be positive", file=sys.stderr)
        return 2
    args.t0 = time.time()
    data = args.out / "data"
    try:
        summary_path = args.out / "data_summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            built = {"faces": summary.get("faces_folder"), "cap_per_emotion": summary.get("cap_per_emotion", None)}
            asked = {"faces": str(args.faces.resolve()), "cap_per_emotion": args.cap_per_emotion}
            differ = [f"--{k.replace('_', '-')} {built[k]} (asked: {asked[k]})" for k in built
                      if k in summary or (k == "faces" and "faces_folder" in summary) if built[k] != asked[k]]
            if differ:
                raise InputError(f"--out {args.out}", "its data were built with other settings (" + "; ".join(differ)
                                 + "): use another --out, or delete its data to rebuild them")
        else:
            summary = build_data(args.faces, args.media, data, args.val_fraction, args.edits, args.seed, args.workers,
                                 args.limit, args.clip_frames, cap=args.cap_per_emotion)
            summary["data_seconds"] = round(time.time() - args.t0)
            summary["faces_folder"] = str(args.faces.resolve())
            summary_path.write_text(json.dumps(summary, indent=1))
        if args.distil_from is not None:
            summary["distilled"] = distil.distil_cache(data / "train", args.distil_from, args.distil_weight, AUS)
        log.info("data: %s", summary)
        if args.data_only:
            print(json.dumps(summary))
            return 0
        best, history = train_and_select(args, data)
        report = finish(args, data, best, history, summary)
    except RTATLError as exc:
        print(f"default_model: error: {exc}", file=sys.stderr)
        return 2
    print((args.out / "report.md").read_text())
    print(json.dumps({"checkpoint": str(args.out / "model.ckpt"), "heldout_man": report["heldout_man"],
                      "seconds_total": report["seconds_total"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
