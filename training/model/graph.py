"""The composition: the inference graph (``RTATLBackbone``, sec. 3.1-3.2 and the max fusion), its
export wrapper, and the training graph (``RTATL``: the backbone plus the auxiliary modules of the
configured variant, their parameter groups and the two alternating steps of Eq. 9).

ResNet-18 -> top-down fusion to stride 4 -> RoI features around two centres per AU ->
one two-conv module per AU -> average pooling to d=128 -> transformer (1 encoder layer without
positional encoding, 1 decoder layer with learned AU indicators added to its input) -> the two
enhanced RoI features of each AU averaged -> per-AU local FC; global FC on the pooled ResNet
features; final logits = elementwise max(local, global).

Every setting comes from one ``ModelConfig`` (``training.config``). Module attribute names are
part of the checkpoint keys and of the exported node names, so they stay as they are (e.g.
``transformer`` holds the relation module, a GCN for Backbone^G).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from rtatl_sdk.contract import geometry

from .. import losses
from ..config import ModelConfig
from .backbone import TopDownFusion, resnet_trunk
from .ofe import FlowHead
from .relation import relation_module
from .roi import PerAUConvs, roi_boxes
from .roii import (
    PatchAUClassifier,
    PatchDiscriminator,
    PatchGenerator,
    crop_patches,
    crop_random_au,
    lost_area,
    white_pixel,
    whiten,
)
from .ssl import JIGSAW_PERMUTATIONS, SSLHead, exemplar_views, info_nce, jigsaw_batch, jigsaw_permutations, rotate_batch

#: top of the AU intensity scale (FACS A-E as 1-5, 0 absent)
INTENSITY_MAX = 5.0

#: The Table 1 variants: which auxiliary tasks are on. Backbone^G is ``backbone`` with
#: ``relation="gcn"``; rotation, jigsaw and exemplar are the other self-supervised tasks the
#: paper compares with, each in place of RoII and OFE.
VARIANTS = {"backbone": (), "ofe": ("ofe",), "roii": ("roii",), "rtatl": ("roii", "ofe"),
            "rotation": ("rotation",), "jigsaw": ("jigsaw",), "exemplar": ("exemplar",)}
SSL_TASKS = ("rotation", "jigsaw", "exemplar")
#: the SSL head's outputs per task (exemplar: an embedding)
SSL_OUTPUTS = {"rotation": 4, "jigsaw": JIGSAW_PERMUTATIONS, "exemplar": 128}


@dataclass
class BackboneOutput:
    logits: torch.Tensor  #: (B, N) final = max(local, global)
    local_logits: torch.Tensor  #: (B, N)
    global_logits: torch.Tensor  #: (B, N)
    roi_tokens: torch.Tensor  #: (B, 2N, d) transformer outputs, one per RoI (input of G)
    global_maps: torch.Tensor  #: (B, 512, H/32, W/32) ResNet-18 output (input of the flow head)
    intensity: torch.Tensor | None = None  #: (B, N) AU intensities on the 0-5 scale (``intensity=True``)
    emotions: torch.Tensor | None = None  #: (B, E) expression logits (``emotions=E``)


class RTATLBackbone(nn.Module):
    """The network used at test time (sec. 3.5: the auxiliary modules are removed).

    ``init``: read ``cfg.pretrained`` into the trunk (and warn when there is none); False where
    weights follow from a checkpoint."""

    def __init__(self, cfg: ModelConfig, n_aus: int, *, init: bool = True):
        super().__init__()
        d = cfg.d
        self.n_aus, self.d, self.roi_size, self.roi_cells = n_aus, d, geometry.ROI_SIZE, cfg.roi_cells
        #: a lighter graph: the input is resized to this side first (``ModelConfig.work_size``)
        self.work_size = cfg.work_size
        self.stem, self.layers = resnet_trunk(str(cfg.pretrained) if init and cfg.pretrained else None, warn_random=init)
        self.fusion = TopDownFusion(out_channels=d)
        self.au_convs = PerAUConvs(n_aus, d, cfg.roi_cells, cfg.roi_vector)
        self.relation = cfg.relation
        self.transformer = relation_module(cfg.relation, n_aus, d, cfg.heads, cfg.ff)
        self.local_fc = nn.Parameter(torch.randn(n_aus, d) * d**-0.5)  # per-AU local FC
        self.local_bias = nn.Parameter(torch.zeros(n_aus))
        self.global_fc = nn.Linear(512, n_aus)
        #: the intensity head beside the occurrence head: the same two branches (per-AU local FC on
        #: the enhanced RoI tokens, a global FC on the ResNet output), max-fused as the logits are,
        #: squashed onto 0-5 (the FACS A-E scale as DISFA codes it, and OpenFace's AUxx_r)
        self.intensity = cfg.intensity
        if cfg.intensity:
            self.local_int = nn.Parameter(torch.randn(n_aus, d) * d**-0.5)
            self.local_int_bias = nn.Parameter(torch.zeros(n_aus))
            self.global_int = nn.Linear(512, n_aus)
        #: the expression head (not in the paper): the pooled ResNet output and the N enhanced
        #: per-AU features -> E expression logits, so expressions read the same AU evidence
        self.emotions = cfg.emotions
        if cfg.emotions:
            self.emotion_head = nn.Sequential(nn.Linear(512 + n_aus * d, 128), nn.ReLU(inplace=True),
                                              nn.Linear(128, cfg.emotions))

    def roi_boxes(self, centres: torch.Tensor) -> torch.Tensor:
        """(B, 2N, 2) centres -> (B*2N, 5) roi_align boxes (``roi.roi_boxes``)."""
        return roi_boxes(centres, self.roi_size)

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
        tokens = self.transformer(self.au_convs(rois))  # Eq. 1
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


@dataclass
class StepOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    # what the discriminator step needs (RoII only)
    real: torch.Tensor | None = None
    fake: torch.Tensor | None = None
    patch_au: torch.Tensor | None = None  #: (M,) index of the cropped AU of each patch
    patch_target: torch.Tensor | None = None  #: (M,) its (pseudo) label


class RTATL(nn.Module):
    """The training graph of ``cfg`` (a ``ModelConfig``) for the AUs ``aus``: the backbone and the
    auxiliary modules of ``cfg.variant``. ``init``: as for ``RTATLBackbone``."""

    def __init__(self, cfg: ModelConfig, aus: tuple[int, ...], *, init: bool = True):
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise ValueError(f"variant {cfg.variant!r} is not one of {sorted(VARIANTS)}")
        self.cfg, self.aus, self.variant = cfg, tuple(aus), cfg.variant
        tasks = VARIANTS[cfg.variant]
        self.use_roii, self.use_ofe = "roii" in tasks, "ofe" in tasks
        self.ssl = next((t for t in tasks if t in SSL_TASKS), None)
        self.aux_scale = 1.0  #: weight of the auxiliary losses this step (the trainer sets it: ``set_step``)
        n = len(self.aus)
        self.backbone = RTATLBackbone(cfg, n, init=init)
        if self.use_roii:
            self.generator = PatchGenerator(cfg.d, cfg.g_width)
            self.discriminator = PatchDiscriminator(cfg.dc_width)
            self.classifier = PatchAUClassifier(n, cfg.dc_width)
        if self.use_ofe:
            self.flow_head = FlowHead(mid=cfg.flow_width)
        if self.ssl is not None:
            self.ssl_head = SSLHead(SSL_OUTPUTS[self.ssl])
            self.register_buffer("perms", jigsaw_permutations(), persistent=False)
        self.register_buffer("white", white_pixel(), persistent=False)
        self.pos_weight: torch.Tensor | None = None  #: optional per-AU weight of positives in L_Sup

    def set_step(self, step: int) -> None:
        """The auxiliary losses' warm-up weight for training step ``step``: min(1, step / aux_warmup)."""
        self.aux_scale = 1.0 if self.cfg.aux_warmup <= 0 else min(1.0, step / self.cfg.aux_warmup)

    def forward(self, inputs, mode: str = "g", gen: torch.Generator | None = None) -> StepOutput:
        """One entry point (so DistributedDataParallel sees both steps): mode "g" or "d"."""
        if mode == "g":
            return self.generator_step(inputs, gen)
        if mode == "d":
            return self.discriminator_step(inputs)
        raise ValueError(f"mode must be 'g' or 'd', got {mode!r}")

    # --- parameter groups for the alternating optimisation --------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        mods = [self.backbone] + ([self.generator] if self.use_roii else []) + ([self.flow_head] if self.use_ofe else []) \
            + ([self.ssl_head] if self.ssl else [])
        return [p for m in mods for p in m.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        if not self.use_roii:
            return []
        return list(self.discriminator.parameters()) + list(self.classifier.parameters())

    # --- RoI inpainting input (sec. 3.3) ----------------------------------------------------
    def crop_random_au(self, images: torch.Tensor, centres: torch.Tensor, labelled: torch.Tensor,
                       gen: torch.Generator | None = None):
        """``roii.crop_random_au`` with this model's AU count, ``crop_prob`` and ``crop_max_lost``."""
        return crop_random_au(images, centres, labelled, n_aus=len(self.aus), crop_prob=self.cfg.crop_prob,
                              crop_max_lost=self.cfg.crop_max_lost, white=self.white, gen=gen)

    def whiten(self, images: torch.Tensor, kc: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
        """``roii.whiten`` with the network's white."""
        return whiten(images, kc, self.white, which)

    lost_area = staticmethod(lost_area)

    def pseudo_labels(self, images: torch.Tensor, centres: torch.Tensor, k: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
        """Pseudo label of AU ``k[i]`` on the intact image i where ``need[i]`` (no known label), 0
        elsewhere (sec. 3.3). Computed in eval mode: no dropout, and the BatchNorm statistics are
        not updated by this extra pass."""
        out = images.new_zeros(images.shape[0])
        if bool(need.any()):
            was = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                logits = self.backbone(images[need], centres[need]).logits
            self.backbone.train(was)
            rows = torch.arange(logits.shape[0], device=images.device)
            out[need] = (logits[rows, k[need]] > 0).to(images.dtype)
        return out

    # --- the two steps of Eq. 9 ---------------------------------------------------------------
    def _roii_terms(self, batch: dict, known: torch.Tensor, terms: dict, res: StepOutput, gen):
        """The RoII half of the generator step: crop, run the backbone on the cropped images, and
        L_G (Eq. 3, 4, 6, 7) into ``terms``; the patches the discriminator step needs into ``res``.
        Returns the backbone's output and the L_Sup mask (AUs in the intact regions, sec. 3.5)."""
        images, centres, labels = batch["image"], batch["centres"], batch["labels"]
        cropped, k, kc, keep, crop = self.crop_random_au(images, centres, batch["labelled"], gen)
        idx = crop.nonzero().squeeze(1)  # the cropped images: G, D and C work on their RoIs
        k, kc = k[idx], kc[idx]
        pseudo_k = self.pseudo_labels(images[idx], centres[idx], k, ~known[idx, k])
        out = self.backbone(cropped, centres)
        x = torch.stack([out.roi_tokens[idx, 2 * k], out.roi_tokens[idx, 2 * k + 1]], 1).reshape(2 * len(idx), -1)
        fake = self.generator(x.detach() if self.cfg.roii_detach else x)
        real = crop_patches(images[idx], kc)
        target = torch.where(known[idx, k], labels[idx, k].clamp(min=0).to(images.dtype), pseudo_k)
        patch_au, patch_target = k.repeat_interleave(2), target.repeat_interleave(2)
        terms["adv_g"] = losses.adversarial_g(self.discriminator(fake))  # Eq. 3
        terms["rec"] = losses.reconstruction(real, fake)  # Eq. 4
        terms["cls_g"] = losses.patch_au(self.classifier(fake), patch_au, patch_target)  # Eq. 6
        terms["G"] = losses.generator(terms["adv_g"], terms["rec"], terms["cls_g"], self.cfg.lambda1, self.cfg.lambda2)  # Eq. 7
        res.real, res.fake, res.patch_au, res.patch_target = real, fake.detach(), patch_au, patch_target
        return out, known & keep

    def generator_step(self, batch: dict, gen: torch.Generator | None = None) -> StepOutput:
        """L_Sup + L_G + lambda_f L_F (Eq. 9 without the discriminator's terms)."""
        images, centres, labels = batch["image"], batch["centres"], batch["labels"]
        known = (labels >= 0) & batch["labelled"][:, None]
        terms: dict[str, torch.Tensor] = {}
        res = StepOutput(total=images.new_zeros(()))
        if self.use_roii:
            out, sup_mask = self._roii_terms(batch, known, terms, res, gen)
        else:
            out, sup_mask = self.backbone(images, centres), known
        terms["sup"] = losses.supervised(out, labels, sup_mask, self.pos_weight)
        if out.intensity is not None and "intensity" in batch:
            terms["int"] = losses.intensity(out.intensity, batch["intensity"], sup_mask)
        if out.emotions is not None and "emotions" in batch:
            terms["emo"] = losses.emotion(out.emotions, batch["emotions"], batch["labelled"])
        if self.ssl is not None:
            terms["ssl"] = self.ssl_loss(images, out.global_maps.mean(dim=(2, 3)), gen)
        if self.use_ofe:
            terms["flow"] = losses.flow(self.flow_head(out.global_maps), batch["flow"], batch["has_flow"])  # Eq. 8
        c = self.cfg
        res.total = losses.total_generator_side(terms, aux_scale=self.aux_scale, lambda_f=c.lambda_f, lambda_ssl=c.lambda_ssl,
                                                lambda_int=c.lambda_int, lambda_emo=c.lambda_emo)
        res.terms = terms
        return res

    def ssl_loss(self, images: torch.Tensor, pooled: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """The rotation / jigsaw / exemplar loss on every image of the batch (labelled or not);
        ``pooled``: the intact images' pooled ResNet features (the exemplar task's first view)."""
        if self.ssl == "exemplar":
            other = self.backbone.features(exemplar_views(images, gen))
            return info_nce(self.ssl_head(pooled), self.ssl_head(other))
        x, target = rotate_batch(images, gen) if self.ssl == "rotation" else jigsaw_batch(images, self.perms, gen)
        return F.cross_entropy(self.ssl_head(self.backbone.features(x)), target)

    def discriminator_step(self, g: StepOutput) -> StepOutput:
        """L_D = -L_adv (Eq. 2) on real patches and detached fakes, plus L_C (Eq. 5) on real patches."""
        l_d = losses.discriminator(self.discriminator(g.real), self.discriminator(g.fake))
        l_c = losses.patch_au(self.classifier(g.real), g.patch_au, g.patch_target)
        return StepOutput(total=l_d + l_c, terms={"D": l_d, "C": l_c})
