"""Network input normalisation: the single definition shared by training, export and the SDK."""

from __future__ import annotations

import numpy as np

#: Colour order the network expects.
COLOUR_ORDER = "RGB"
#: ImageNet statistics on [0, 1] RGB (the ResNet-18 backbone's initialisation).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(images_rgb: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 RGB -> float32 ``(B, 3, H, W)`` network input."""
    arr = np.asarray(images_rgb)
    if arr.ndim == 3:
        arr = arr[None]
    x = arr.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
