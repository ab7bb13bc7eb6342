"""The full RTATL training graph: backbone + RoI inpainting (RoII) + optical-flow estimation (OFE).

Losses follow the paper: Eq. 2-7 (RoII), Eq. 8 (OFE), Eq. 9 (total). The optimisation
alternates two steps per batch: ``generator_step`` (backbone, G, flow head: L_Sup + L_G +
lambda_f L_F) and ``discriminator_step`` (D and C: L_D + L_C).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rtatl_sdk import geometry, preprocess

from .aux_heads import FlowHead, PatchAUClassifier, PatchDiscriminator, PatchGenerator, crop_patches
from .model import RTATLBackbone

#: The Table 1 variants: which auxiliary tasks are on.
VARIANTS = {"backbone": (False, False), "ofe": (False, True), "roii": (True, False), "rtatl": (True, True)}


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
    def __init__(self, aus: tuple[int, ...], variant: str = "rtatl", d: int = 128, heads: int = 8,
                 lambda1: float = 0.1, lambda2: float = 0.1, lambda_f: float = 0.2,
                 pretrained: str | None = None, crop_overlap: float = 0.5,
                 log_init: bool = True, ff: int = 2048):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {sorted(VARIANTS)}")
        self.aus = tuple(aus)
        self.variant = variant
        self.use_roii, self.use_ofe = VARIANTS[variant]
        self.lambda1, self.lambda2, self.lambda_f = lambda1, lambda2, lambda_f
        self.crop_overlap = crop_overlap
        n = len(self.aus)
        self.backbone = RTATLBackbone(n, d, heads, ff=ff, pretrained=pretrained, log_init=log_init)
        if self.use_roii:
            self.generator = PatchGenerator(d)
            self.discriminator = PatchDiscriminator()
            self.classifier = PatchAUClassifier(n)
        if self.use_ofe:
            self.flow_head = FlowHead()
        white = (1.0 - torch.tensor(preprocess.MEAN)) / torch.tensor(preprocess.STD)
        self.register_buffer("white", white.view(1, 3, 1, 1), persistent=False)
        self.pos_weight: torch.Tensor | None = None  #: optional per-AU weight of positives in L_Sup

    @classmethod
    def from_config(cls, cfg, aus, from_checkpoint: bool = False) -> RTATL:
        """The training graph of a ``TrainConfig``; ``from_checkpoint``: weights come later, skip init."""
        m = cfg.model
        pretrained = str(m.pretrained) if m.pretrained and not from_checkpoint else None
        return cls(aus, m.variant, m.d, m.heads, m.lambda1, m.lambda2, m.lambda_f,
                   pretrained=pretrained, log_init=not from_checkpoint, ff=m.ff)

    def forward(self, inputs, mode: str = "g", gen: torch.Generator | None = None) -> StepOutput:
        """One entry point (so DistributedDataParallel sees both steps): mode "g" or "d"."""
        if mode == "g":
            return self.generator_step(inputs, gen)
        if mode == "d":
            return self.discriminator_step(inputs)
        raise ValueError(f"mode must be 'g' or 'd', got {mode!r}")

    # --- parameter groups for the alternating optimisation --------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        mods = [self.backbone] + ([self.generator] if self.use_roii else []) + ([self.flow_head] if self.use_ofe else [])
        return [p for m in mods for p in m.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        if not self.use_roii:
            return []
        return list(self.discriminator.parameters()) + list(self.classifier.parameters())

    # --- RoI inpainting input -----------------------------------------------------------
    def crop_random_au(self, images: torch.Tensor, centres: torch.Tensor, gen: torch.Generator | None = None):
        """Fill both RoIs of one random AU per image with white (sec. 3.3).

        Returns the cropped images, the AU index per image, and a (B, N) mask that is False for
        every AU whose region was cropped (an RoI box overlapping a cropped box with IoU >=
        ``crop_overlap``, which includes AUs sharing the cropped RoIs, e.g. AU12/14/15):
        L_Sup skips those (sec. 3.5).
        """
        b, _, h, w = images.shape
        n = len(self.aus)
        k = torch.randint(0, n, (b,), generator=gen, device="cpu").to(images.device)
        idx = torch.arange(b, device=images.device)
        kc = torch.stack([centres[idx, 2 * k], centres[idx, 2 * k + 1]], 1)  # (B, 2, 2)
        half = geometry.ROI_SIZE / 2
        ys = torch.arange(h, device=images.device, dtype=centres.dtype).view(1, 1, h, 1)
        xs = torch.arange(w, device=images.device, dtype=centres.dtype).view(1, 1, 1, w)
        inside = ((xs - kc[..., 0, None, None]).abs() < half) & ((ys - kc[..., 1, None, None]).abs() < half)
        mask = inside.any(1, keepdim=True)  # (B, 1, H, W)
        cropped = torch.where(mask, self.white.to(images.dtype), images)
        # IoU of each AU's two boxes with the two cropped boxes (equal-size squares)
        d = (centres[:, :, None, :] - kc[:, None, :, :]).abs()  # (B, 2N, 2, 2)
        inter = (2 * half - d).clamp(min=0).prod(-1)
        iou = inter / (2 * (2 * half) ** 2 - inter)
        cropped_au = (iou.amax(-1) >= self.crop_overlap).view(b, n, 2).any(-1)
        cropped_au[idx, k] = True
        return cropped, k, kc, ~cropped_au

    # --- losses -------------------------------------------------------------------------
    @staticmethod
    def supervised_loss(out, labels: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
        """L_Sup: binary cross entropy on known, uncropped labels of labelled images.

        Applied to the fused logits and to both branches (the max passes gradient to one branch
        only), averaged. ``mask`` (B, N) selects the terms that count; ``pos_weight`` (N,)
        optionally re-weights positive labels per AU.
        """
        m = mask.to(out.logits.dtype)
        denom = m.sum().clamp(min=1.0)
        y = labels.clamp(min=0).to(out.logits.dtype)
        total = 0.0
        for logits in (out.logits, out.local_logits, out.global_logits):
            bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none", pos_weight=pos_weight)
            total = total + (bce * m).sum() / denom
        return total / 3

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

    def generator_step(self, batch: dict, gen: torch.Generator | None = None) -> StepOutput:
        """L_Sup + L_G + lambda_f L_F (Eq. 9 without the discriminator's terms)."""
        images, centres, labels = batch["image"], batch["centres"], batch["labels"]
        known = (labels >= 0) & batch["labelled"][:, None]
        terms: dict[str, torch.Tensor] = {}
        res = StepOutput(total=images.new_zeros(()))
        if self.use_roii:
            cropped, k, kc, keep = self.crop_random_au(images, centres, gen)
            b = images.shape[0]
            idx = torch.arange(b, device=images.device)
            pseudo_k = self.pseudo_labels(images, centres, k, ~known[idx, k])
            out = self.backbone(cropped, centres)
            x = torch.stack([out.roi_tokens[idx, 2 * k], out.roi_tokens[idx, 2 * k + 1]], 1).reshape(2 * b, -1)
            fake = self.generator(x)
            real = crop_patches(images, kc)
            lab_k = labels[idx, k]
            target = torch.where(known[idx, k], lab_k.clamp(min=0).to(images.dtype), pseudo_k)
            patch_au, patch_target = k.repeat_interleave(2), target.repeat_interleave(2)
            pidx = torch.arange(2 * b, device=images.device)
            d_fake = self.discriminator(fake)
            terms["adv_g"] = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))  # Eq. 3
            terms["rec"] = (real - fake).abs().mean()  # Eq. 4 (l1)
            terms["cls_g"] = F.binary_cross_entropy_with_logits(self.classifier(fake)[pidx, patch_au], patch_target)  # Eq. 6
            terms["G"] = self.lambda1 * terms["adv_g"] + (1 - self.lambda1) * terms["rec"] + self.lambda2 * terms["cls_g"]  # Eq. 7
            res.real, res.fake, res.patch_au, res.patch_target = real, fake.detach(), patch_au, patch_target
            sup_mask = known & keep
        else:
            out = self.backbone(images, centres)
            sup_mask = known
        terms["sup"] = self.supervised_loss(out, labels, sup_mask, self.pos_weight)
        total = terms["sup"] + (terms["G"] if self.use_roii else 0.0)
        if self.use_ofe:
            has = batch["has_flow"]
            pred = self.flow_head(out.global_maps)
            if has.any():
                target = F.adaptive_avg_pool2d(batch["flow"][has], pred.shape[-2:])
                terms["flow"] = (pred[has] - target).abs().mean()  # Eq. 8
            else:
                terms["flow"] = pred.sum() * 0.0
            total = total + self.lambda_f * terms["flow"]
        res.total = total
        res.terms = terms
        return res

    def discriminator_step(self, g: StepOutput) -> StepOutput:
        """L_D = -L_adv (Eq. 2) on real patches and detached fakes, plus L_C (Eq. 5) on real patches."""
        d_real, d_fake = self.discriminator(g.real), self.discriminator(g.fake)
        l_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        pidx = torch.arange(g.real.shape[0], device=g.real.device)
        l_c = F.binary_cross_entropy_with_logits(self.classifier(g.real)[pidx, g.patch_au], g.patch_target)
        return StepOutput(total=l_d + l_c, terms={"D": l_d, "C": l_c})
