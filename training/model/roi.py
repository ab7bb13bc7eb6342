"""Sec. 3.2: the RoI boxes around two centres per AU and the per-AU RoI modules that make each
RoI map into the "vectorized RoI feature" the relation module reads."""

from __future__ import annotations

import torch
from torch import nn


def roi_boxes(centres: torch.Tensor, roi_size: float) -> torch.Tensor:
    """(B, 2N, 2) centres -> (B*2N, 5) boxes [batch index, x1, y1, x2, y2] for roi_align.

    Centres use pixel-centre coordinates (pixel i at i, flips map x to W-1-x); roi_align
    (aligned=True) puts pixel i's centre at i + 0.5, hence the half-pixel shift.
    """
    b, n2, _ = centres.shape
    h = roi_size / 2
    idx = torch.arange(b, device=centres.device, dtype=centres.dtype).repeat_interleave(n2).unsqueeze(1)
    c = centres.reshape(b * n2, 2) + 0.5
    return torch.cat([idx, c - h, c + h], dim=1)


class PerAUConvs(nn.Module):
    """One module of two 3x3 convs per AU, run as grouped convolutions (group i = AU i), then each
    RoI map made into the transformer's "vectorized RoI feature" (sec. 3.2): ``roi_vector="mean"``
    averages the C x r x r map over its cells (C numbers); ``"linear"`` keeps where in the RoI a
    movement happens: one linear layer, shared by every AU and RoI, over the flattened map
    (C*r*r -> C)."""

    def __init__(self, n_aus: int, channels: int = 128, roi_cells: int = 12, roi_vector: str = "mean"):
        super().__init__()
        c = n_aus * channels
        self.n_aus, self.channels = n_aus, channels
        if roi_vector not in ("mean", "linear"):
            raise ValueError(f"roi_vector must be 'mean' or 'linear', got {roi_vector!r}")
        self.roi_vector = roi_vector
        self.flatten = nn.Linear(channels * roi_cells * roi_cells, channels) if roi_vector == "linear" else None
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, groups=n_aus), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, groups=n_aus), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        )

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        """(B, 2N, C, r, r) RoI maps -> (B, 2N, C) pooled features."""
        b, n2, c, r, _ = rois.shape
        n = n2 // 2
        # (B, N, 2, C, r, r) -> (B*2, N*C, r, r): each AU's two RoIs pass through that AU's convs
        x = rois.view(b, n, 2, c, r, r).transpose(1, 2).reshape(b * 2, n * c, r, r)
        x = self.body(x)
        if self.flatten is None:
            x = x.mean(dim=(2, 3))  # average pooling -> 128-d per RoI
        else:
            x = self.flatten(x.reshape(b * 2, n, c * r * r)).reshape(b * 2, n * c)
        return x.view(b, 2, n, c).transpose(1, 2).reshape(b, n2, c)
