"""The paper's losses, one function per equation (sec. 3.3-3.5), and the losses of the heads
the paper does not have (intensity, expression). ``training.model.graph.RTATL`` composes them
into its two alternating steps: the generator side of Eq. 9 (``RTATL.generator_step``) and the
discriminator side (``RTATL.discriminator_step``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supervised(out, labels: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """L_Sup of Eq. 9: binary cross entropy on known, uncropped labels of labelled images.

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


def discriminator(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """L_D = -L_adv (Eq. 2 and 7): D scores real patches as real and G's (detached) patches as fake."""
    return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))


def adversarial_g(d_fake: torch.Tensor) -> torch.Tensor:
    """L_adv^g (Eq. 3): -E log D(G(x))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def reconstruction(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L_rec (Eq. 4): the l1 distance of G's patches to the cropped originals."""
    return (real - fake).abs().mean()


def patch_au(c_logits: torch.Tensor, au: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_C (Eq. 5, C on real patches) and L_c^g (Eq. 6, C on G's patches): cross entropy of the
    cropped AU's logit (``au``: its index per patch) against its (pseudo) label."""
    rows = torch.arange(c_logits.shape[0], device=c_logits.device)
    return F.binary_cross_entropy_with_logits(c_logits[rows, au], target)


def generator(adv_g: torch.Tensor, rec: torch.Tensor, cls_g: torch.Tensor, lambda1: float, lambda2: float) -> torch.Tensor:
    """L_G (Eq. 7): lambda1 L_adv^g + (1 - lambda1) L_rec + lambda2 L_c^g."""
    return lambda1 * adv_g + (1 - lambda1) * rec + lambda2 * cls_g


def flow(pred: torch.Tensor, target: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """L_F (Eq. 8): l1 between the predicted flow and the TV-L1 target (pooled to the prediction's
    size) on the images that have one; 0 (with a graph) where none has."""
    if not bool(has.any()):
        return pred.sum() * 0.0
    return (pred[has] - F.adaptive_avg_pool2d(target[has], pred.shape[-2:])).abs().mean()


def intensity(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_int (not in the paper): mean squared error of the 0-5 intensities over the known ones
    (target >= 0) that ``mask`` keeps (labelled images, AUs outside the whitened RoIs); 0 where
    none is known."""
    m = (mask & (target >= 0)).to(pred.dtype)
    return (((pred - target.clamp(min=0)) ** 2) * m).sum() / m.sum().clamp(min=1.0)


def emotion(logits: torch.Tensor, votes: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """L_emo (not in the paper): cross entropy of the expression logits against the crowd's vote
    shares (soft labels, rows summing to 1) of the labelled images that have votes (-1: none); 0
    where none."""
    m = labelled.to(torch.bool) & (votes[:, 0] >= 0)
    if not bool(m.any()):
        return logits.sum() * 0.0
    return -(votes[m] * F.log_softmax(logits[m], dim=1)).sum(1).mean()


def total_generator_side(terms: dict[str, torch.Tensor], *, aux_scale: float, lambda_f: float, lambda_ssl: float,
                         lambda_int: float, lambda_emo: float) -> torch.Tensor:
    """Eq. 9 without the discriminator's terms: L_Sup + L_G + lambda_f L_F, where the run has
    them; plus lambda_ssl L_ssl (Table 1's other tasks), lambda_int L_int and lambda_emo L_emo.
    ``aux_scale`` (the warm-up weight, ``ModelConfig.aux_warmup``) scales the auxiliary terms only."""
    total = terms["sup"]
    if "G" in terms:
        total = total + aux_scale * terms["G"]
    if "ssl" in terms:
        total = total + aux_scale * lambda_ssl * terms["ssl"]
    if "flow" in terms:
        total = total + aux_scale * lambda_f * terms["flow"]
    if "int" in terms:
        total = total + lambda_int * terms["int"]  # supervised like L_Sup: no warm-up
    if "emo" in terms:
        total = total + lambda_emo * terms["emo"]
    return total
