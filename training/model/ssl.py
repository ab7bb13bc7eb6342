"""Table 1's other self-supervised tasks, each in place of RoII and OFE, on the pooled ResNet-18
features: rotation, jigsaw and exemplar (instance discrimination), and their shared head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
