"""Modules of the two self-supervised auxiliary tasks (paper sec. 3.3-3.4); training only."""

from __future__ import annotations

import torch
from torch import nn

from rtatl_sdk.contract import geometry


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


class FlowHead(nn.Module):
    """OFE: two transposed convolutions from the ResNet-18 output maps to a 2-channel flow.

    With a 192 input the maps are 6x6 and the flow comes out at 96x96 (stride 2), in units of
    input pixels; the loss compares it with the TV-L1 target pooled to the same size.
    """

    def __init__(self, in_channels: int = 512, mid: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_channels, mid, 4, 4), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, 2, 4, 4),
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.net(maps)


def crop_patches(images: torch.Tensor, centres: torch.Tensor, size: int = geometry.ROI_SIZE) -> torch.Tensor:
    """(B, 3, H, W) images and (B, K, 2) centres -> (B*K, 3, size, size) pixel patches."""
    from torchvision.ops import roi_align

    b, k, _ = centres.shape
    h = size / 2
    idx = torch.arange(b, device=images.device, dtype=images.dtype).repeat_interleave(k).unsqueeze(1)
    c = centres.reshape(b * k, 2).to(images.dtype) + 0.5  # pixel-centre coordinates -> roi_align's
    boxes = torch.cat([idx, c - h, c + h], 1)
    return roi_align(images, boxes, size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


# --- Table 1's other self-supervised tasks, in place of RoII / OFE (on the ResNet-18 features) --
def rotate_batch(images: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation (Gidaris et al.): each image turned by 0/90/180/270 degrees; (images, class 0-3)."""
    r = torch.randint(0, 4, (images.shape[0],), generator=gen, device="cpu").to(images.device)
    out = torch.stack([torch.rot90(img, int(k), dims=(1, 2)) for img, k in zip(images, r)])
    return out, r


#: Jigsaw: 3x3 tiles, this many fixed permutations (a seeded draw; the first is the identity).
JIGSAW_PERMUTATIONS = 30


def jigsaw_permutations(n: int = JIGSAW_PERMUTATIONS, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    perms = [torch.arange(9)]
    while len(perms) < n:
        p = torch.randperm(9, generator=g)
        if not any(torch.equal(p, q) for q in perms):
            perms.append(p)
    return torch.stack(perms)


def jigsaw_batch(images: torch.Tensor, perms: torch.Tensor, gen: torch.Generator | None = None):
    """Jigsaw (Noroozi & Favaro): 3x3 tiles of each image shuffled by one of ``perms``; (images, class)."""
    b, c, h, _ = images.shape
    t = h // 3
    cls = torch.randint(0, len(perms), (b,), generator=gen, device="cpu")
    tiles = images[:, :, :3 * t, :3 * t].reshape(b, c, 3, t, 3, t).permute(0, 2, 4, 1, 3, 5).reshape(b, 9, c, t, t)
    order = perms[cls].to(images.device)
    shuffled = tiles[torch.arange(b, device=images.device)[:, None], order]
    out = shuffled.reshape(b, 3, 3, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 3 * t, 3 * t)
    return out, cls.to(images.device)


def exemplar_views(images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Exemplar / instance discrimination (Dosovitskiy et al.; here as a batch-wise contrastive
    task): a second view of each image, flipped at random and with random brightness and contrast."""
    b = images.shape[0]
    flip = torch.rand(b, generator=gen, device="cpu").to(images.device) < 0.5
    gain = (0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=gen, device="cpu")).to(images.device)
    shift = (0.4 * torch.rand(b, 1, 1, 1, generator=gen, device="cpu") - 0.2).to(images.device)
    view = torch.where(flip.view(b, 1, 1, 1), images.flip(-1), images)
    mean = view.mean(dim=(1, 2, 3), keepdim=True)
    return (view - mean) * gain + mean + shift


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between two views' embeddings: each image's other view is its positive."""
    import torch.nn.functional as F

    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class SSLHead(nn.Module):
    """Pooled ResNet-18 features (512) -> ``out`` logits (rotation, jigsaw) or an embedding (exemplar)."""

    def __init__(self, out: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(512, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)
