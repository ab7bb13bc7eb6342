"""Distillation from a trained model: the recipe's targets pulled towards another model's outputs.

``python -m training.recipes.default_model ... --graph light --distil-from runs/v2/export/model.onnx``
trains the lighter graph on a blend of the recipe's own targets (``training.recipes.targets``)
and another model's (here v2's) probabilities and intensities on the same training faces:

    target = (1 - w) * recipe_target + w * p_model        (w: ``--distil-weight``)

per face and AU, where the recipe's target is known; the AUs a synthetic edit made keep their
exact 1 (the edit is known to show them). Intensities blend the same way (when the model has
them). The model reads each cached face as evaluation does (centre crop, no augmentation),
through onnxruntime, so any exported model file of the recipe's AU set, in its order, can serve
(docs/experiments.md has what distilling v2 into the light graph gave). The validation cache is left alone: the
student is still judged against the teacher and the emotion labels, not against the model it
learns from.

The training cache is rewritten part by part (atomically); each part keeps its recipe targets
as ``undistilled_targets`` / ``undistilled_intensities``, so distilling again, from another
model or with another weight, starts from the recipe's targets, never from a blend.
``distilled.json`` beside the parts records the model (path, SHA-256), the weight and the faces.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rtatl_sdk.contract import preprocess
from rtatl_sdk.contract.au import au_label
from rtatl_sdk.errors import InputError
from rtatl_sdk.io.files import file_sha256

from ..data import cache as cache_format
from . import targets as targets_mod

log = logging.getLogger("rtatl.recipe")
RECORD = "distilled.json"


def model_outputs(model: Path, cache: Path, aus, batch: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, 0-5 intensities or None for a model without them) of ``model`` (an
    exported ONNX file predicting ``aus`` in that order) on every face of ``cache``, in
    ``CacheIndex`` order."""
    from rtatl_sdk.engines import cpu_session_options, open_session
    from rtatl_sdk.errors import RTATLError

    from ..data.dataset import AUDataset, collate

    try:  # the model contract's graph and card (AU list and order), as the SDK checks them
        sess, card = open_session(Path(model), cpu_session_options(), ["CPUExecutionProvider"])
    except RTATLError as exc:
        raise InputError(f"--distil-from {model}", str(exc)) from None
    if list(card.au_numbers) != list(aus):
        raise InputError(f"--distil-from {model}", f"predicts {card.aus}, not the recipe's {[au_label(a) for a in aus]}")
    wanted = ["logits"] + (["intensity"] if "intensity" in [o.name for o in sess.get_outputs()] else [])
    ds = AUDataset(cache, None, train=False, labelled=True, aus=tuple(aus))
    probs, inten = [], []
    for s in range(0, len(ds), batch):
        b = collate([ds[i] for i in range(s, min(len(ds), s + batch))])
        out = sess.run(wanted, {"image": b["image"].numpy(), "centres": b["centres"].numpy()})
        probs.append(preprocess.sigmoid(out[0]))
        inten.append(np.asarray(out[-1], np.float64))
    return np.concatenate(probs), (np.concatenate(inten) if len(wanted) == 2 else None)


def blend(recipe: np.ndarray, model: np.ndarray, weight: float, keep: np.ndarray | None = None) -> np.ndarray:
    """``(1 - w) * recipe + w * model`` where ``recipe`` is known (>= 0); unknown stays -1;
    ``keep`` (bool, same shape): entries left as the recipe has them."""
    recipe = np.asarray(recipe, np.float32)
    out = np.where(recipe >= 0, (1.0 - weight) * recipe + weight * np.asarray(model, np.float32), recipe)
    if keep is not None:
        out = np.where(keep, recipe, out)
    return out.astype(np.float32)


def distil_cache(cache: Path, model: Path, weight: float, aus) -> dict:
    """Rewrite the targets of every part of ``cache`` as the blend above; returns the record
    (also written to ``cache/distilled.json``). Nothing is done when the record already says
    the same model file and weight."""
    if not 0.0 < weight <= 1.0:
        raise InputError(f"--distil-weight {weight}", "must lie in (0, 1]")
    if not Path(model).is_file():
        raise InputError(f"--distil-from {model}", "no such file")
    sha = file_sha256(model)
    record_path = Path(cache) / RECORD
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        if old.get("sha256") == sha and old.get("weight") == weight:
            log.info("training targets already distilled from %s (weight %s)", model, weight)
            return old
    log.info("distilling the training targets from %s (weight %s)", model, weight)
    probs, inten = model_outputs(Path(model), cache, aus)
    start, faces = 0, 0
    for part in cache_format.iter_parts(cache):
        n = len(part)
        p, i = probs[start:start + n], (inten[start:start + n] if inten is not None else None)
        start += n
        base_t = part.extra.get("undistilled_targets", part.targets)
        base_i = part.extra.get("undistilled_intensities", part.extra.get("intensities"))
        if base_t is None:
            raise InputError(str(cache_format.part_path(cache, part.key)), "has no soft targets to distil into")
        base_t = np.asarray(base_t, np.float32).reshape(n, -1)
        edited = (base_t == 1.0) if part.key.startswith("edits") else None  # an edit's AUs stay exactly 1
        part.targets = blend(base_t, p, weight, edited)
        part.labels = targets_mod.hard(part.targets)
        part.extra["undistilled_targets"] = base_t
        if base_i is not None and i is not None:
            base_i = np.asarray(base_i, np.float32).reshape(n, -1)
            part.extra["undistilled_intensities"] = base_i
            part.extra["intensities"] = blend(base_i, np.clip(i, 0.0, 5.0), weight)
        cache_format.write_part(cache, part)
        faces += n
    if start != len(probs):  # the index and the parts are read from the same files
        raise InputError(str(cache), "changed while it was being distilled; run again")
    mean_t = {au_label(a): round(float(probs[:, j].mean()), 4) for j, a in enumerate(aus)}
    record = {"model": str(model), "sha256": sha, "weight": weight, "faces": faces, "intensities": inten is not None,
              "model_mean_probability": mean_t}
    record_path.write_text(json.dumps(record, indent=1))
    return record
