"""Training targets of the default model: teacher scores, emotion priors and synthetic edits.

How the three sources combine, per face and AU (targets in [0, 1]; the loss is binary cross
entropy on soft targets, so a target is the probability the model should output):

1. **Teacher**: the blendshape teacher's soft score ``t`` (``training.teacher``), not its
   thresholded decision: a half-raised brow is 0.4, not 0. It is the only source for most AUs
   and for faces without an emotion label.
2. **Emotion prior** (weak, where the crowd label exists): for the emotion's prototype AUs the
   target is pulled *up* towards the prior strength ``p`` (``EMOTION_PRIORS``):
   ``max(t, W_PRIOR * p + (1 - W_PRIOR) * t)``. The pull is only upward, so the teacher can
   still add AUs the emotion does not name, and it fixes the teacher's blind spots: its AU6
   (cheekSquint) barely moves on real smiles, while a happiness face is pulled to about 0.5.
   A "neutral" label pulls every AU *down*: ``(1 - W_NEUTRAL) * t``, which removes the
   teacher's identity offsets (a resting brow or mouth shape read as an action) unless the
   teacher is very sure. One rater per image makes the label noisy, hence weights below 1:
   a happiness face whose teacher AU12 is 0 ends at 0.65, not 1.
   Where a corpus has crowd votes (FER+'s ten raters), each emotion counts with the weight
   ``min(1, share / FULL_SHARE)`` (half of the votes count fully; a single label is a one-hot
   vote): the neutral pull on the teacher is ``1 - W_NEUTRAL * w_neutral``, then each prototype
   AU is pulled up towards ``sum_e w_e * p_e`` (at most 1).
3. **Synthetic edits** (``training.edits``): a real face warped by an AU's FACS displacement is
   known to show that AU, so the edited AUs get exactly 1; the other AUs keep the unedited
   face's combined targets. Edits give within-person contrasts: the same face with and without
   the action, which a model cannot explain by identity.

The teacher is read through ``teacher_evidence`` first: its AU6 (cheekSquint) is 0 on almost
every face, FACS-coded smiles included, so AU6 takes ``AU06_FROM_SMILE`` x its AU12 where that
is larger (AU6 accompanies most smiles). Intensity targets are 5 x the combined target
(``intensity``): the same evidence as the occurrence, so a resting face's intensity goes to 0
with its neutral pull and AU6's rises on smiles.

Hard labels (for F1, thresholds and the positive weights of L_Sup) are the targets >= 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

#: emotion -> {AU: prior strength}; the corpus README's prototypes ("usually" ~0.9-1, "often" ~0.6-0.8)
#: (the FACS prototypes: happiness 6+12, surprise 1+2+5+26 (lips part: 25), anger 4+5+7+23,
#: sadness 1+4+15, disgust 9+10 (+4), fear 1+2+4+5+20+26, contempt 14 (unilateral))
EMOTION_PRIORS: Mapping[str, Mapping[int, float]] = MappingProxyType({k: MappingProxyType(v) for k, v in {
    "happiness": {12: 1.0, 6: 0.8, 25: 0.4},
    "surprise": {1: 0.9, 2: 0.9, 5: 0.7, 25: 0.8, 26: 0.7},
    "anger": {4: 0.8, 7: 0.6, 23: 0.5},
    "sadness": {1: 0.6, 4: 0.6, 15: 0.8, 17: 0.4},
    "disgust": {9: 0.7, 10: 0.8, 4: 0.5},
    "fear": {1: 0.7, 2: 0.6, 4: 0.6, 5: 0.6, 20: 0.7, 25: 0.6},
    "contempt": {14: 0.7},
}.items()})
#: AU6 evidence from the teacher's smile where its cheekSquint stays at 0 (``teacher_evidence``)
AU06_FROM_SMILE = 0.7
W_PRIOR = 0.65  #: weight of an emotion's prior against the teacher
W_NEUTRAL = 0.5  #: how far a "neutral" label pulls every AU towards 0
FULL_SHARE = 0.5  #: an emotion with this share of the crowd's votes counts as a full label


def teacher_evidence(teacher: np.ndarray, aus) -> np.ndarray:
    """The teacher's scores as AU evidence: AU6 at least ``AU06_FROM_SMILE`` x AU12."""
    t = np.clip(np.asarray(teacher, np.float32), 0.0, 1.0).copy()
    aus = list(aus)
    if 6 in aus and 12 in aus:
        t[aus.index(6)] = max(t[aus.index(6)], AU06_FROM_SMILE * t[aus.index(12)])
    return t


def combine(teacher: np.ndarray, emotion: str, aus, votes=None) -> np.ndarray:
    """Targets of one face from its teacher scores (in ``aus`` order) and its emotion ("" = none)
    or its crowd vote shares over ``EMOTIONS`` (``votes``, which take precedence)."""
    from rtatl_sdk.contract.emotions import EMOTIONS

    t = teacher_evidence(teacher, aus)
    if votes is None:
        if emotion not in EMOTIONS:
            return t
        votes = [1.0 if e == emotion else 0.0 for e in EMOTIONS]
    weight = {e: min(1.0, float(v) / FULL_SHARE) for e, v in zip(EMOTIONS, votes)}
    t = (1.0 - W_NEUTRAL * weight["neutral"]) * t
    aus = list(aus)
    prior = np.zeros(len(aus), np.float32)
    for emo, w in weight.items():
        for au, p in EMOTION_PRIORS.get(emo, {}).items():
            if au in aus and w > 0:
                prior[aus.index(au)] += w * p
    prior = np.minimum(prior, 1.0)
    return np.where(prior > 0, np.maximum(t, W_PRIOR * prior + (1.0 - W_PRIOR) * t), t).astype(np.float32)


def intensity(targets: np.ndarray) -> np.ndarray:
    """0-5 intensity targets from combined targets (-1 stays unknown)."""
    t = np.asarray(targets, np.float32)
    return np.where(t < 0, -1.0, 5.0 * np.clip(t, 0.0, 1.0)).astype(np.float32)


def edited(targets: np.ndarray, edited_aus, aus) -> np.ndarray:
    """Targets of an edited face: the edited AUs exactly 1, the others as in the original."""
    out = np.asarray(targets, np.float32).copy()
    for au in edited_aus:
        out[list(aus).index(au)] = 1.0
    return out


def hard(targets: np.ndarray) -> np.ndarray:
    """Hard labels (int8: 1 / 0, -1 where the target is unknown) from targets."""
    t = np.asarray(targets, np.float32)
    return np.where(t < 0, -1, t >= 0.5).astype(np.int8)
