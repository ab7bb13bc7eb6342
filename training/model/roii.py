"""Sec. 3.3, RoI inpainting (RoII): which AU's RoIs are whitened on which image, the white fill,
the share of every other RoI lost to it, and the modules G (patch generator), D (discriminator)
and C (patch AU classifier). Training only; their losses are Eq. 2-7 in ``training.losses``."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from rtatl_sdk.contract import geometry, preprocess


def white_pixel() -> torch.Tensor:
    """A white pixel in the network's normalised input space, (1, 3, 1, 1)."""
    return ((1.0 - torch.tensor(preprocess.MEAN)) / torch.tensor(preprocess.STD)).view(1, 3, 1, 1)


def whiten(images: torch.Tensor, kc: torch.Tensor, white: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` with the two RoI squares around ``kc`` (B, 2, 2) filled with ``white``, on the
    images ``which`` selects (all by default)."""
    b, _, h, w = images.shape
    half = geometry.ROI_SIZE / 2
    ys = torch.arange(h, device=images.device, dtype=kc.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=images.device, dtype=kc.dtype).view(1, 1, 1, w)
    inside = ((xs - kc[..., 0, None, None]).abs() < half) & ((ys - kc[..., 1, None, None]).abs() < half)
    mask = inside.any(1, keepdim=True)  # (B, 1, H, W)
    if which is not None:
        mask = mask & which.view(b, 1, 1, 1)
    return torch.where(mask, white.to(images.dtype), images)


def lost_area(centres: torch.Tensor, kc: torch.Tensor, size: float = geometry.ROI_SIZE) -> torch.Tensor:
    """Share of each RoI (B, 2N centres, ``size`` squares) covered by the union of the two
    cropped squares around ``kc`` (B, 2, 2): |R & A| + |R & B| - |R & A & B|, per axis exact."""
    def overlap(*cs):  # side lengths of the intersection of squares centred at cs, per axis
        stack = torch.stack(torch.broadcast_tensors(*cs), 0)
        return (size - (stack.amax(0) - stack.amin(0))).clamp(min=0).prod(-1)

    r, a, b2 = centres, kc[:, None, 0, :], kc[:, None, 1, :]
    return (overlap(r, a) + overlap(r, b2) - overlap(r, a, b2)) / size**2


def crop_random_au(images: torch.Tensor, centres: torch.Tensor, labelled: torch.Tensor, *, n_aus: int,
                   crop_prob: float, crop_max_lost: float, white: torch.Tensor, gen: torch.Generator | None = None):
    """Fill both RoIs of one random AU with white on some images (sec. 3.3): every unlabelled
    image and a ``crop_prob`` share of the labelled ones (at least one image per batch).

    Returns the images (cropped where chosen), the AU index per image, its two centres, a
    (B, N) mask that is False for every AU of a cropped image that lost more than
    ``crop_max_lost`` of either RoI's area to the whitened RoIs (the cropped AU itself, AUs
    sharing its RoIs such as AU12/14/15, and neighbours mostly covered): L_Sup skips those,
    sec. 3.5 "only on AUs in the intact regions"; and which images were cropped (B,).
    """
    b = images.shape[0]
    k = torch.randint(0, n_aus, (b,), generator=gen, device="cpu").to(images.device)
    draw = torch.rand(b, generator=gen, device="cpu").to(images.device)
    crop = (draw < crop_prob) | ~labelled.to(torch.bool)
    if not bool(crop.any()):
        crop[torch.argmin(draw)] = True
    idx = torch.arange(b, device=images.device)
    kc = torch.stack([centres[idx, 2 * k], centres[idx, 2 * k + 1]], 1)  # (B, 2, 2)
    cropped = whiten(images, kc, white, crop)
    lost = lost_area(centres, kc)  # (B, 2N) share of each RoI inside the whitened boxes
    excluded = (lost > crop_max_lost).view(b, n_aus, 2).any(-1)
    excluded[idx, k] = True
    return cropped, k, kc, ~(excluded & crop[:, None]), crop


def crop_patches(images: torch.Tensor, centres: torch.Tensor, size: int = geometry.ROI_SIZE) -> torch.Tensor:
    """(B, 3, H, W) images and (B, K, 2) centres -> (B*K, 3, size, size) pixel patches."""
    b, k, _ = centres.shape
    h = size / 2
    idx = torch.arange(b, device=images.device, dtype=images.dtype).repeat_interleave(k).unsqueeze(1)
    c = centres.reshape(b * k, 2).to(images.dtype) + 0.5  # pixel-centre coordinates -> roi_align's
    boxes = torch.cat([idx, c - h, c + h], 1)
    return roi_align(images, boxes, size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


class PatchGenerator(nn.Module):
    """G: R^d -> R^{3 x 48 x 48}, five transposed convolutions (sec. 4.2)."""

    def __init__(self, d: int = 128, base: int = 256):
        super().__init__()
        chans = [d, base, base // 2, base // 4, base // 8]

        def up(ci, co, k, s, p):
            return [nn.ConvTranspose2d(ci, co, k, s, p), nn.BatchNorm2d(co), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(
            *up(chans[0], chans[1], 3, 1, 0),  # 1 -> 3
            *up(chans[1], chans[2], 4, 2, 1),  # 3 -> 6
            *up(chans[2], chans[3], 4, 2, 1),  # 6 -> 12
            *up(chans[3], chans[4], 4, 2, 1),  # 12 -> 24
            nn.ConvTranspose2d(chans[4], 3, 4, 2, 1),  # 24 -> 48
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, d) attended RoI features -> (M, 3, 48, 48) patches in normalised pixel space."""
        return self.net(x[:, :, None, None])


def _conv_stack(out_dim: int, base: int = 32) -> nn.Sequential:
    """Five convolutions on a 3x48x48 patch: 48 -> 24 -> 12 -> 6 -> 3 -> 1."""
    c = [3, base, base * 2, base * 4, base * 8]
    layers: list[nn.Module] = []
    for ci, co in zip(c[:-1], c[1:]):
        layers += [nn.Conv2d(ci, co, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    layers += [nn.Conv2d(c[-1], out_dim, 3, 1, 0), nn.Flatten()]
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """D: R^{3x48x48} -> real/fake logit (five convolutions)."""

    def __init__(self, base: int = 32):
        super().__init__()
        self.net = _conv_stack(1, base)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p).squeeze(1)


class PatchAUClassifier(nn.Module):
    """C: R^{3x48x48} -> one logit per AU (five convolutions); the cropped AU's logit is used."""

    def __init__(self, n_aus: int, base: int = 32):
        super().__init__()
        self.net = _conv_stack(n_aus, base)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p)
