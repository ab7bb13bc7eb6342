"""Training targets of the default model: teacher scores, emotion priors and synthetic edits.

How the three sources combine, per face and AU (targets in [0, 1]; the loss is binary cross
entropy on soft targets, so a target is the probability the model should output):

1. **Teacher**: the blendshape teacher's soft score ``t`` (``rtatl_sdk.teacher``), not its
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
3. **Synthetic edits** (``training.edits``): a real face warped by an AU's FACS displacement is
   known to show that AU, so the edited AUs get exactly 1; the other AUs keep the unedited
   face's combined targets. Edits give within-person contrasts: the same face with and without
   the action, which a model cannot explain by identity.

Hard labels (for F1, thresholds and the positive weights of L_Sup) are the targets >= 0.5.
"""

from __future__ import annotations

import numpy as np

#: emotion -> {AU: prior strength}; the corpus README's prototypes ("usually" ~0.9-1, "often" ~0.6-0.8)
EMOTION_PRIORS: dict[str, dict[int, float]] = {
    "happiness": {12: 1.0, 6: 0.8},
    "surprise": {1: 0.9, 2: 0.9},
    "anger": {4: 0.8, 7: 0.6},
    "sadness": {1: 0.6, 4: 0.6, 15: 0.8},
    "disgust": {10: 0.8, 4: 0.5},
    "fear": {1: 0.7, 2: 0.6, 4: 0.6},
    "contempt": {14: 0.7},
}
W_PRIOR = 0.65  #: weight of an emotion's prior against the teacher
W_NEUTRAL = 0.5  #: how far a "neutral" label pulls every AU towards 0


def combine(teacher: np.ndarray, emotion: str, aus) -> np.ndarray:
    """Targets of one face from its teacher scores (in ``aus`` order) and its emotion ("" = none)."""
    t = np.clip(np.asarray(teacher, np.float32), 0.0, 1.0).copy()
    if emotion == "neutral":
        return (1.0 - W_NEUTRAL) * t
    for au, p in EMOTION_PRIORS.get(emotion, {}).items():
        if au in aus:
            j = list(aus).index(au)
            t[j] = max(t[j], W_PRIOR * p + (1.0 - W_PRIOR) * t[j])
    return t


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
