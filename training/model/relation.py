"""Sec. 3.2, Eq. 1: the AU-relation transformer with AU indicators; beside it the GCN of Table 1's
Backbone^G. ``relation_module`` picks one from ``ModelConfig.relation``."""

from __future__ import annotations

import torch
from torch import nn


class AURelationTransformer(nn.Module):
    """Eq. 1: one encoder (no positional encoding) + one decoder whose input carries AU indicators."""

    def __init__(self, n_aus: int, d: int = 128, heads: int = 8, ff: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoderLayer(d, heads, ff, dropout, batch_first=True)
        self.au_indicators = nn.Parameter(torch.randn(n_aus, d) * 0.02)  # d x N learned, one per AU

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 2N, d) RoI tokens (two per AU, consecutive) -> (B, 2N, d) enhanced tokens."""
        memory = self.encoder(tokens)
        indicators = self.au_indicators.repeat_interleave(2, dim=0)  # both RoIs of AU i get indicator i
        return self.decoder(tokens + indicators, memory)


class AURelationGCN(nn.Module):
    """Backbone^G of Table 1: a two-layer GCN over AU nodes instead of the transformer. A node is
    the mean of its AU's two RoI features; the fixed graph is the training labels' co-occurrence
    (``set_prior``: A_ij = P(AU_j present | AU_i present) >= ``threshold``, plus self loops,
    symmetrically normalised). Both RoI tokens of an AU come out as its node's output."""

    def __init__(self, n_aus: int, d: int = 128, threshold: float = 0.4):
        super().__init__()
        self.threshold = threshold
        self.register_buffer("adjacency", torch.eye(n_aus))  # saved with the weights
        self.w1, self.w2 = nn.Linear(d, d), nn.Linear(d, d)

    @torch.no_grad()
    def set_prior(self, labels: torch.Tensor) -> None:
        """The graph from (frames, N) labels (1 present, 0 absent, -1 unknown)."""
        known = (labels >= 0).float()
        pos = (labels == 1).float()
        both = pos.t() @ pos  # frames where i and j are both present
        base = (pos.t() @ known).clamp(min=1)  # frames where i is present and j is known
        a = ((both / base) >= self.threshold).float()
        a.fill_diagonal_(1.0)
        a = ((a + a.t()) > 0).float()
        deg = a.sum(1).rsqrt()
        self.adjacency.copy_(deg[:, None] * a * deg[None, :])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n2, d = tokens.shape
        nodes = tokens.view(b, n2 // 2, 2, d).mean(2)
        h = torch.relu(self.adjacency @ self.w1(nodes))
        h = self.adjacency @ self.w2(h) + nodes
        return h.repeat_interleave(2, dim=1)


def relation_module(kind: str, n_aus: int, d: int, heads: int, ff: int) -> nn.Module:
    """``ModelConfig.relation``: "transformer" (the paper) or "gcn" (Backbone^G)."""
    if kind == "transformer":
        return AURelationTransformer(n_aus, d, heads, ff)
    if kind == "gcn":
        return AURelationGCN(n_aus, d)
    raise ValueError(f"relation must be 'transformer' or 'gcn', got {kind!r}")
