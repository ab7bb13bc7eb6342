"""Sec. 3.4, optical-flow estimation (OFE) from a single image: the flow head on the ResNet-18
output. Training only; its loss is Eq. 8 in ``training.losses``; the TV-L1 targets come from
``training.flow`` via ``rtatl-prep``."""

from __future__ import annotations

import torch
from torch import nn


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
