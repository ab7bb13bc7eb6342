"""Network input normalisation: the single definition shared by training, export and the SDK."""

from __future__ import annotations

import numpy as np

#: Colour order the network expects.
COLOUR_ORDER = "RGB"
#: ImageNet statistics on [0, 1] RGB (the ResNet-18 backbone's initialisation).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def sigmoid(logits) -> np.ndarray:
    """Model logits -> probabilities (float64), the one place the SDK and export convert them."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def normalise(images_rgb: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """``(B, H, W, 3)`` or ``(H, W, 3)`` uint8 RGB -> float32 ``(B, 3, H, W)`` network input."""
    arr = np.asarray(images_rgb)
    if arr.ndim == 3:
        arr = arr[None]
    x = arr.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def model_inputs(crops_bgr, crop_landmarks, aus, mean=MEAN, std=STD, colour_order: str = COLOUR_ORDER
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Batch the 192x192 BGR face crops and their 68 landmarks into the model's two inputs:
    ``image`` float32 (B, 3, 192, 192) in ``colour_order`` (the model card's) and ``centres``
    float32 (B, 2N, 2)."""
    from .geometry import au_centres

    if colour_order not in ("RGB", "BGR"):
        raise ValueError(f"colour_order must be 'RGB' or 'BGR', got {colour_order!r}")
    crops = [np.asarray(c) for c in crops_bgr]
    if len({c.shape for c in crops}) > 1 or crops[0].ndim != 3 or crops[0].shape[2] != 3:
        raise ValueError(f"crops must be (H, W, 3) images of one size, got {sorted({c.shape for c in crops})}")
    order = (2, 1, 0) if colour_order == "RGB" else (0, 1, 2)
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    h, w = crops[0].shape[:2]
    image = np.empty((len(crops), 3, h, w), np.float32)
    for b, crop in enumerate(crops):  # ``normalise``'s arithmetic, plane by plane: no channel-swapped copy, no transpose
        for ch, src in enumerate(order):
            plane = image[b, ch]
            np.divide(crop[:, :, src], np.float32(255.0), out=plane, dtype=np.float32)
            plane -= m[ch]
            plane /= s[ch]
    centres = np.stack([au_centres(p, aus) for p in crop_landmarks]).astype(np.float32)
    return image, centres
