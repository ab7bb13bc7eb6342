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

from rtatl_sdk.contract import geometry, preprocess

from .aux_heads import (
    JIGSAW_PERMUTATIONS,
    FlowHead,
    PatchAUClassifier,
    PatchDiscriminator,
    PatchGenerator,
    SSLHead,
    crop_patches,
    exemplar_views,
    info_nce,
    jigsaw_batch,
    jigsaw_permutations,
    rotate_batch,
)
from .model import RTATLBackbone

#: The Table 1 variants: which auxiliary tasks are on. Backbone^G is ``backbone`` with
#: ``relation="gcn"``; rotation, jigsaw and exemplar are the other self-supervised tasks the
#: paper compares with, each in place of RoII and OFE.
VARIANTS = {"backbone": (), "ofe": ("ofe",), "roii": ("roii",), "rtatl": ("roii", "ofe"),
            "rotation": ("rotation",), "jigsaw": ("jigsaw",), "exemplar": ("exemplar",)}
SSL_TASKS = ("rotation", "jigsaw", "exemplar")


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
                 pretrained: str | None = None, crop_max_lost: float = 0.1, crop_prob: float = 0.5,
                 log_init: bool = True, ff: int = 2048, roi_cells: int = 12, widths: tuple[int, int, int] = (1024, 128, 128),
                 relation: str = "transformer", lambda_ssl: float = 0.2, roii_detach: bool = False,
                 aux_warmup: int = 0, roi_vector: str = "mean", intensity: bool = False, lambda_int: float = 1.0,
                 work_size: int | None = None, emotions: int = 0, lambda_emo: float = 0.5):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {sorted(VARIANTS)}")
        self.aus = tuple(aus)
        self.variant = variant
        tasks = VARIANTS[variant]
        self.use_roii, self.use_ofe = "roii" in tasks, "ofe" in tasks
        self.ssl = next((t for t in tasks if t in SSL_TASKS), None)
        self.lambda_ssl = lambda_ssl
        self.lambda1, self.lambda2, self.lambda_f = lambda1, lambda2, lambda_f
        self.crop_max_lost, self.crop_prob = crop_max_lost, crop_prob
        self.roii_detach, self.aux_warmup = roii_detach, aux_warmup
        self.aux_scale = 1.0  #: weight of the auxiliary losses this step (the trainer sets it: ``set_step``)
        n = len(self.aus)
        self.backbone = RTATLBackbone(n, d, heads, roi_cells=roi_cells, ff=ff, pretrained=pretrained, log_init=log_init,
                                      roi_vector=roi_vector, intensity=intensity, relation=relation,
                                      work_size=work_size, emotions=emotions)
        self.lambda_int, self.lambda_emo = lambda_int, lambda_emo
        g_width, dc_width, flow_width = widths
        if self.use_roii:
            self.generator = PatchGenerator(d, g_width)
            self.discriminator = PatchDiscriminator(dc_width)
            self.classifier = PatchAUClassifier(n, dc_width)
        if self.use_ofe:
            self.flow_head = FlowHead(mid=flow_width)
        if self.ssl is not None:
            self.ssl_head = SSLHead({"rotation": 4, "jigsaw": JIGSAW_PERMUTATIONS, "exemplar": 128}[self.ssl])
            self.register_buffer("perms", jigsaw_permutations(), persistent=False)
        white = (1.0 - torch.tensor(preprocess.MEAN)) / torch.tensor(preprocess.STD)
        self.register_buffer("white", white.view(1, 3, 1, 1), persistent=False)
        self.pos_weight: torch.Tensor | None = None  #: optional per-AU weight of positives in L_Sup

    @classmethod
    def from_config(cls, cfg, aus, from_checkpoint: bool = False) -> RTATL:
        """The training graph of a ``TrainConfig``; ``from_checkpoint``: weights come later, skip init."""
        m = cfg.model
        pretrained = str(m.pretrained) if m.pretrained and not from_checkpoint else None
        return cls(aus, m.variant, m.d, m.heads, m.lambda1, m.lambda2, m.lambda_f, pretrained=pretrained,
                   crop_max_lost=m.crop_max_lost, crop_prob=m.crop_prob, log_init=not from_checkpoint, ff=m.ff,
                   roi_cells=m.roi_cells, widths=(m.g_width, m.dc_width, m.flow_width), relation=m.relation,
                   lambda_ssl=m.lambda_ssl, roii_detach=m.roii_detach, aux_warmup=m.aux_warmup, roi_vector=m.roi_vector,
                   intensity=m.intensity, lambda_int=m.lambda_int, work_size=m.work_size, emotions=m.emotions,
                   lambda_emo=m.lambda_emo)

    def set_step(self, step: int) -> None:
        """The auxiliary losses' warm-up weight for training step ``step``: min(1, step / aux_warmup)."""
        self.aux_scale = 1.0 if self.aux_warmup <= 0 else min(1.0, step / self.aux_warmup)

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

    # --- RoI inpainting input -----------------------------------------------------------
    def crop_random_au(self, images: torch.Tensor, centres: torch.Tensor, labelled: torch.Tensor,
                       gen: torch.Generator | None = None):
        """Fill both RoIs of one random AU with white on some images (sec. 3.3): every unlabelled
        image and a ``crop_prob`` share of the labelled ones (at least one image per batch).

        Returns the images (cropped where chosen), the AU index per image, its two centres, a
        (B, N) mask that is False for every AU of a cropped image that lost more than
        ``crop_max_lost`` of either RoI's area to the whitened RoIs (the cropped AU itself, AUs
        sharing its RoIs such as AU12/14/15, and neighbours mostly covered): L_Sup skips those,
        sec. 3.5 "only on AUs in the intact regions"; and which images were cropped (B,).
        """
        b = images.shape[0]
        n = len(self.aus)
        k = torch.randint(0, n, (b,), generator=gen, device="cpu").to(images.device)
        draw = torch.rand(b, generator=gen, device="cpu").to(images.device)
        crop = (draw < self.crop_prob) | ~labelled.to(torch.bool)
        if not bool(crop.any()):
            crop[torch.argmin(draw)] = True
        idx = torch.arange(b, device=images.device)
        kc = torch.stack([centres[idx, 2 * k], centres[idx, 2 * k + 1]], 1)  # (B, 2, 2)
        cropped = self.whiten(images, kc, crop)
        lost = self.lost_area(centres, kc)  # (B, 2N) share of each RoI inside the whitened boxes
        excluded = (lost > self.crop_max_lost).view(b, n, 2).any(-1)
        excluded[idx, k] = True
        return cropped, k, kc, ~(excluded & crop[:, None]), crop

    def whiten(self, images: torch.Tensor, kc: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
        """``images`` with the two RoI squares around ``kc`` (B, 2, 2) filled with white, on the
        images ``which`` selects (all by default)."""
        b, _, h, w = images.shape
        half = geometry.ROI_SIZE / 2
        ys = torch.arange(h, device=images.device, dtype=kc.dtype).view(1, 1, h, 1)
        xs = torch.arange(w, device=images.device, dtype=kc.dtype).view(1, 1, 1, w)
        inside = ((xs - kc[..., 0, None, None]).abs() < half) & ((ys - kc[..., 1, None, None]).abs() < half)
        mask = inside.any(1, keepdim=True)  # (B, 1, H, W)
        if which is not None:
            mask = mask & which.view(b, 1, 1, 1)
        return torch.where(mask, self.white.to(images.dtype), images)

    @staticmethod
    def lost_area(centres: torch.Tensor, kc: torch.Tensor, size: float = geometry.ROI_SIZE) -> torch.Tensor:
        """Share of each RoI (B, 2N centres, ``size`` squares) covered by the union of the two
        cropped squares around ``kc`` (B, 2, 2): |R & A| + |R & B| - |R & A & B|, per axis exact."""
        def overlap(*cs):  # side lengths of the intersection of squares centred at cs, per axis
            stack = torch.stack(torch.broadcast_tensors(*cs), 0)
            return (size - (stack.amax(0) - stack.amin(0))).clamp(min=0).prod(-1)

        r, a, b2 = centres, kc[:, None, 0, :], kc[:, None, 1, :]
        return (overlap(r, a) + overlap(r, b2) - overlap(r, a, b2)) / size**2

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

    @staticmethod
    def intensity_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_int: mean squared error of the 0-5 intensities over the known ones (target >= 0) that
        ``mask`` keeps (labelled images, AUs outside the whitened RoIs); 0 where none is known."""
        m = (mask & (target >= 0)).to(pred.dtype)
        return (((pred - target.clamp(min=0)) ** 2) * m).sum() / m.sum().clamp(min=1.0)

    @staticmethod
    def emotion_loss(logits: torch.Tensor, votes: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """L_emo: cross entropy of the expression logits against the crowd's vote shares (soft
        labels, rows summing to 1) of the labelled images that have votes (-1: none); 0 where none."""
        m = labelled.to(torch.bool) & (votes[:, 0] >= 0)
        if not bool(m.any()):
            return logits.sum() * 0.0
        return -(votes[m] * F.log_softmax(logits[m], dim=1)).sum(1).mean()

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
            cropped, k, kc, keep, crop = self.crop_random_au(images, centres, batch["labelled"], gen)
            idx = crop.nonzero().squeeze(1)  # the cropped images: G, D and C work on their RoIs
            k, kc = k[idx], kc[idx]
            pseudo_k = self.pseudo_labels(images[idx], centres[idx], k, ~known[idx, k])
            out = self.backbone(cropped, centres)
            x = torch.stack([out.roi_tokens[idx, 2 * k], out.roi_tokens[idx, 2 * k + 1]], 1).reshape(2 * len(idx), -1)
            fake = self.generator(x.detach() if self.roii_detach else x)
            real = crop_patches(images[idx], kc)
            lab_k = labels[idx, k]
            target = torch.where(known[idx, k], lab_k.clamp(min=0).to(images.dtype), pseudo_k)
            patch_au, patch_target = k.repeat_interleave(2), target.repeat_interleave(2)
            pidx = torch.arange(2 * len(idx), device=images.device)
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
        if out.intensity is not None and "intensity" in batch:
            terms["int"] = self.intensity_loss(out.intensity, batch["intensity"], sup_mask)
        if out.emotions is not None and "emotions" in batch:
            terms["emo"] = self.emotion_loss(out.emotions, batch["emotions"], batch["labelled"])
        w = self.aux_scale  # 1 unless the auxiliary losses warm up (model.aux_warmup)
        total = terms["sup"] + (w * terms["G"] if self.use_roii else 0.0)  # Eq. 9, generator side
        if self.ssl is not None:
            terms["ssl"] = self.ssl_loss(images, out.global_maps.mean(dim=(2, 3)), gen)
            total = total + w * self.lambda_ssl * terms["ssl"]
        if self.use_ofe:
            has = batch["has_flow"]
            pred = self.flow_head(out.global_maps)
            if has.any():
                target = F.adaptive_avg_pool2d(batch["flow"][has], pred.shape[-2:])
                terms["flow"] = (pred[has] - target).abs().mean()  # Eq. 8
            else:
                terms["flow"] = pred.sum() * 0.0
            total = total + w * self.lambda_f * terms["flow"]
        if "int" in terms:
            total = total + self.lambda_int * terms["int"]  # supervised like L_Sup: no warm-up
        if "emo" in terms:
            total = total + self.lambda_emo * terms["emo"]
        res.total = total
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
        d_real, d_fake = self.discriminator(g.real), self.discriminator(g.fake)
        l_d = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        pidx = torch.arange(g.real.shape[0], device=g.real.device)
        l_c = F.binary_cross_entropy_with_logits(self.classifier(g.real)[pidx, g.patch_au], g.patch_target)
        return StepOutput(total=l_d + l_c, terms={"D": l_d, "C": l_c})
