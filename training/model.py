"""The RTATL backbone network (paper sec. 3.1-3.2) and its inference wrapper.

ResNet-18 -> top-down fusion to stride 4 -> RoI features around two centres per AU ->
one two-conv module per AU -> average pooling to d=128 -> transformer (1 encoder layer without
positional encoding, 1 decoder layer with learned AU indicators added to its input) -> the two
enhanced RoI features of each AU averaged -> per-AU local FC; global FC on the pooled ResNet
features; final logits = elementwise max(local, global).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.ops import roi_align

from rtatl_sdk.contract import geometry

log = logging.getLogger(__name__)


@dataclass
class BackboneOutput:
    logits: torch.Tensor  #: (B, N) final = max(local, global)
    local_logits: torch.Tensor  #: (B, N)
    global_logits: torch.Tensor  #: (B, N)
    roi_tokens: torch.Tensor  #: (B, 2N, d) transformer outputs, one per RoI (input of G)
    global_maps: torch.Tensor  #: (B, 512, H/32, W/32) ResNet-18 output (input of the flow head)
    intensity: torch.Tensor | None = None  #: (B, N) AU intensities on the 0-5 scale (``intensity=True``)
    emotions: torch.Tensor | None = None  #: (B, E) expression logits (``emotions=E``)


def load_pretrained(net: nn.Module, path) -> None:
    """ImageNet ResNet-18 weights (torchvision's ``resnet18-*.pth`` layout) into ``net``, strictly:
    a file that is not such a state dict, or whose keys or shapes differ (other than the
    classifier ``fc.*``, which RTATL does not use), is refused with the keys named, so a wrong
    file can never leave the network silently random."""
    from rtatl_sdk.errors import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing file, pickle, zip errors
        raise CheckpointError(f"pretrained weights {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"pretrained weights {path}: not a state dict of tensors")
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    given = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(given)), sorted(set(given) - set(own))
    shapes = sorted(f"{k} {tuple(given[k].shape)} (needs {tuple(own[k].shape)})" for k in set(own) & set(given)
                    if given[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        def some(keys):
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

        parts = [f"missing {len(missing)} keys: {some(missing)}" if missing else "",
                 f"unexpected {len(unexpected)} keys: {some(unexpected)}" if unexpected else "",
                 f"other shapes: {some(shapes)}" if shapes else ""]
        raise CheckpointError(f"pretrained weights {path}: not a torchvision ResNet-18 state dict; "
                              + "; ".join(p for p in parts if p))
    net.load_state_dict(given, strict=False)  # only fc.* may be absent
    log.info("ResNet-18 initialised from %s (%d tensors)", path, len(given))


def trunk_state_dict(backbone: RTATLBackbone) -> dict[str, torch.Tensor]:
    """The ResNet-18 trunk of a trained ``RTATLBackbone`` in torchvision's layout (no ``fc.*``),
    the layout ``load_pretrained`` reads: a trained trunk becomes a ``--pretrained`` start."""
    net = resnet18(weights=None)
    net.conv1, net.bn1 = backbone.stem[0], backbone.stem[1]
    net.layer1, net.layer2, net.layer3, net.layer4 = backbone.layers
    return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}


#: top of the AU intensity scale (FACS A-E as 1-5, 0 absent)
INTENSITY_MAX = 5.0


class TopDownFusion(nn.Module):
    """Upsample high-level maps and add them to low-level maps, down to stride 4 (sec. 3.1)."""

    def __init__(self, in_channels=(64, 128, 256, 512), out_channels: int = 128):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                                    nn.ReLU(inplace=True))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False) + lat(f)
        return self.smooth(x)


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


class RTATLBackbone(nn.Module):
    """The network used at test time (sec. 3.5: the auxiliary modules are removed)."""

    def __init__(self, n_aus: int, d: int = 128, heads: int = 8, roi_size: int = geometry.ROI_SIZE,
                 roi_cells: int = 8, ff: int = 2048, pretrained: str | None = None,
                 log_init: bool = True, relation: str = "transformer", roi_vector: str = "mean",
                 intensity: bool = False, work_size: int | None = None, emotions: int = 0):
        super().__init__()
        self.n_aus, self.d, self.roi_size, self.roi_cells = n_aus, d, roi_size, roi_cells
        #: a lighter graph: the input is resized to this side first (``ModelConfig.work_size``)
        self.work_size = work_size
        net = resnet18(weights=None)
        if pretrained:
            load_pretrained(net, pretrained)
        elif log_init:
            log.warning("ResNet-18 randomly initialised (no --pretrained ImageNet weights given)")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.fusion = TopDownFusion(out_channels=d)
        self.au_convs = PerAUConvs(n_aus, d, roi_cells, roi_vector)
        if relation not in ("transformer", "gcn"):
            raise ValueError(f"relation must be 'transformer' or 'gcn', got {relation!r}")
        self.relation = relation
        self.transformer = AURelationTransformer(n_aus, d, heads, ff) if relation == "transformer" else AURelationGCN(n_aus, d)
        self.local_fc = nn.Parameter(torch.randn(n_aus, d) * d**-0.5)  # per-AU local FC
        self.local_bias = nn.Parameter(torch.zeros(n_aus))
        self.global_fc = nn.Linear(512, n_aus)
        #: the intensity head beside the occurrence head: the same two branches (per-AU local FC on
        #: the enhanced RoI tokens, a global FC on the ResNet output), max-fused as the logits are,
        #: squashed onto 0-5 (the FACS A-E scale as DISFA codes it, and OpenFace's AUxx_r)
        self.intensity = intensity
        if intensity:
            self.local_int = nn.Parameter(torch.randn(n_aus, d) * d**-0.5)
            self.local_int_bias = nn.Parameter(torch.zeros(n_aus))
            self.global_int = nn.Linear(512, n_aus)
        #: the expression head (not in the paper): the pooled ResNet output and the N enhanced
        #: per-AU features -> E expression logits, so expressions read the same AU evidence
        self.emotions = emotions
        if emotions:
            self.emotion_head = nn.Sequential(nn.Linear(512 + n_aus * d, 128), nn.ReLU(inplace=True),
                                              nn.Linear(128, emotions))

    def roi_boxes(self, centres: torch.Tensor) -> torch.Tensor:
        """(B, 2N, 2) centres -> (B*2N, 5) boxes [batch index, x1, y1, x2, y2] for roi_align.

        Centres use pixel-centre coordinates (pixel i at i, flips map x to W-1-x); roi_align
        (aligned=True) puts pixel i's centre at i + 0.5, hence the half-pixel shift.
        """
        b, n2, _ = centres.shape
        h = self.roi_size / 2
        idx = torch.arange(b, device=centres.device, dtype=centres.dtype).repeat_interleave(n2).unsqueeze(1)
        c = centres.reshape(b * n2, 2) + 0.5
        return torch.cat([idx, c - h, c + h], dim=1)

    def resized(self, image: torch.Tensor) -> torch.Tensor:
        """The image the trunk sees: resized to ``work_size`` (bilinear) when the graph is a lighter one."""
        if self.work_size is None or image.shape[-1] == self.work_size:
            return image
        return F.interpolate(image, size=(self.work_size, self.work_size), mode="bilinear", align_corners=False)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The pooled ResNet-18 output (B, 512): what the rotation, jigsaw and exemplar heads see."""
        x = self.stem(self.resized(image))
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))

    def forward(self, image: torch.Tensor, centres: torch.Tensor) -> BackboneOutput:
        b, side = image.shape[0], image.shape[-1]
        x = self.stem(self.resized(image))
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        fused = self.fusion(feats)  # stride 4 (of the resized image with a work_size)
        scale = fused.shape[-1] / side  # the boxes stay in the input's coordinates
        rois = roi_align(fused, self.roi_boxes(centres), self.roi_cells, spatial_scale=scale, sampling_ratio=2, aligned=True)
        rois = rois.view(b, 2 * self.n_aus, self.d, self.roi_cells, self.roi_cells)
        tokens = self.transformer(self.au_convs(rois))
        per_au = tokens.view(b, self.n_aus, 2, self.d).mean(2)  # average of the two enhanced RoIs
        local = (per_au * self.local_fc).sum(-1) + self.local_bias
        pooled = feats[-1].mean(dim=(2, 3))
        glob = self.global_fc(pooled)
        inten = None
        if self.intensity:
            li = (per_au * self.local_int).sum(-1) + self.local_int_bias
            inten = INTENSITY_MAX * torch.sigmoid(torch.maximum(li, self.global_int(pooled)))
        emo = self.emotion_head(torch.cat([pooled, per_au.flatten(1)], 1)) if self.emotions else None
        return BackboneOutput(torch.maximum(local, glob), local, glob, tokens, feats[-1], inten, emo)


class InferenceModel(nn.Module):
    """Export wrapper: ``(image, centres) -> logits`` (the model contract of the design notes), and
    ``(logits, intensity)`` for a backbone with the intensity head (a second named output), then
    ``emotions`` (expression logits) for a backbone with the expression head."""

    def __init__(self, backbone: RTATLBackbone):
        super().__init__()
        self.backbone = backbone

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + (["intensity"] if self.backbone.intensity else []) + (["emotions"] if self.backbone.emotions else [])

    def forward(self, image: torch.Tensor, centres: torch.Tensor):
        out = self.backbone(image, centres)
        extra = ([out.intensity] if self.backbone.intensity else []) + ([out.emotions] if self.backbone.emotions else [])
        return (out.logits, *extra) if extra else out.logits


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
