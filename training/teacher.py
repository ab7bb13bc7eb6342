"""MediaPipe blendshapes -> BP4D AUs: the blendshape teacher (pseudo-labels and benchmark peer).

MediaPipe's Face Landmarker outputs 52 ARKit-style coefficients in [0, 1]. Each AU below takes
the larger of the left/right coefficients that describe the same movement. Reliability, judged
on the project's real media (not on FACS-coded data): AU12 (mouthSmile) and AU10
(mouthUpperUp) follow visible smiles closely; AU1/AU2 (brow raises) and AU7 (eyeSquint) respond
but with an identity-dependent offset; AU6 (cheekSquint) stayed near 0 on every clip, so it is
effectively never positive; AU14, AU15, AU17, AU23 and AU24 are weak proxies (ARKit has no
dimpler/tightener of the FACS kind) and rarely exceed the threshold.
"""

from __future__ import annotations

import numpy as np

#: AU -> (blendshape names whose maximum is used, reliability note)
BLENDSHAPE_AUS: dict[int, tuple[tuple[str, ...], str]] = {
    1: (("browInnerUp",), "medium"),
    2: (("browOuterUpLeft", "browOuterUpRight"), "medium"),
    4: (("browDownLeft", "browDownRight"), "medium"),
    6: (("cheekSquintLeft", "cheekSquintRight"), "low: near 0 on all media seen"),
    7: (("eyeSquintLeft", "eyeSquintRight"), "medium: identity offset"),
    10: (("mouthUpperUpLeft", "mouthUpperUpRight"), "high on smiles"),
    12: (("mouthSmileLeft", "mouthSmileRight"), "high"),
    14: (("mouthDimpleLeft", "mouthDimpleRight"), "low"),
    15: (("mouthFrownLeft", "mouthFrownRight"), "low"),
    17: (("mouthShrugLower",), "low"),
    23: (("mouthPressLeft", "mouthPressRight"), "low: lip press, the nearest ARKit shape to the tightener"),
    24: (("mouthPressLeft", "mouthPressRight"), "low"),
    # OpenFace's further AUs (held-out faces: jawOpen surprise>neutral AUC 0.78, eyeWide 0.69,
    # noseSneer disgust>neutral 0.80; eyeWide and noseSneer stay near 0 on most faces)
    5: (("eyeWideLeft", "eyeWideRight"), "medium: near 0 on most faces"),
    9: (("noseSneerLeft", "noseSneerRight"), "medium: near 0 on most faces"),
    20: (("mouthStretchLeft", "mouthStretchRight"), "low"),
    25: (("jawOpen",), "medium: lips part with the jaw"),
    26: (("jawOpen",), "high"),
    28: (("mouthRollLower", "mouthRollUpper"), "low"),
    45: (("eyeBlinkLeft", "eyeBlinkRight"), "high on blinks"),
}
#: Teacher score at or above which an AU counts as present.
TEACHER_THRESHOLD = 0.5


def teacher_scores(blendshapes: dict[str, float], aus) -> np.ndarray:
    """AU scores in [0, 1] from one face's blendshapes, in the order of ``aus``."""
    out = np.zeros(len(aus))
    for i, au in enumerate(aus):
        names, _ = BLENDSHAPE_AUS[au]
        out[i] = max(float(blendshapes.get(n, 0.0)) for n in names)
    return out
