"""Sec. 3.1: the ResNet-18 trunk and the top-down fusion that brings its four stages to stride 4;
reading ImageNet weights into the trunk (``--pretrained``) and writing a trained trunk back out."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

log = logging.getLogger("training.model")


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


def resnet_trunk(pretrained: str | None, warn_random: bool) -> tuple[nn.Sequential, nn.ModuleList]:
    """ResNet-18 without its classifier: (stem, the four stages), from ``pretrained`` weights or random."""
    net = resnet18(weights=None)
    if pretrained:
        load_pretrained(net, pretrained)
    elif warn_random:
        log.warning("ResNet-18 randomly initialised (no --pretrained ImageNet weights given)")
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])


def trunk_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The ResNet-18 trunk of a trained ``RTATLBackbone`` in torchvision's layout (no ``fc.*``),
    the layout ``load_pretrained`` reads: a trained trunk becomes a ``--pretrained`` start."""
    net = resnet18(weights=None)
    net.conv1, net.bn1 = backbone.stem[0], backbone.stem[1]
    net.layer1, net.layer2, net.layer3, net.layer4 = backbone.layers
    return {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("fc.")}


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
