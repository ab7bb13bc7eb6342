"""Diagnosis of the auxiliary tasks: how strongly each loss pulls on the backbone, and BatchNorm
statistics re-estimated on intact faces.

``gradient_norms`` answers "which loss reaches which part, and how hard": the L2 norm of each
loss term's gradient at the trunk (ResNet-18 stem and stages) and at the RoI features (top-down
fusion and per-AU RoI modules), and the cosine between each term's trunk gradient and L_Sup's.
``reestimate_batchnorm`` recomputes every BatchNorm layer's running statistics of the backbone
from intact (never whitened) images, leaving all weights as trained.
"""

from __future__ import annotations

import torch
from torch import nn


#: Loss terms of ``RTATL.generator_step`` whose gradient reaches the backbone, with their weight in
#: Eq. 9 given the model's lambdas (L_G = lambda1 L_adv + (1 - lambda1) L_rec + lambda2 L_cls, Eq. 7).
def _weights(model) -> dict[str, float]:
    c = model.cfg
    return {"sup": 1.0, "adv_g": c.lambda1, "rec": 1.0 - c.lambda1, "cls_g": c.lambda2,
            "flow": c.lambda_f, "ssl": c.lambda_ssl, "int": c.lambda_int}


def parameter_groups(model) -> dict[str, list[nn.Parameter]]:
    """The backbone's parts the diagnosis measures: ``trunk`` (ResNet-18) and ``roi`` (fusion + per-AU modules)."""
    b = model.backbone
    return {"trunk": [p for m in (b.stem, b.layers) for p in m.parameters()],
            "roi": [p for m in (b.fusion, b.au_convs) for p in m.parameters()]}


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def gradient_norms(model, batch: dict, gen: torch.Generator | None = None) -> dict[str, dict[str, float]]:
    """{term: {"trunk": |grad|, "roi": |grad|, "cos_sup_trunk": cosine with L_Sup's trunk gradient}} of each
    weighted loss term of one generator step on ``batch`` (train mode, as in training; nothing is updated)."""
    groups = parameter_groups(model)
    was = model.training
    model.train()
    out = model.generator_step(batch, gen)
    weights = _weights(model)
    terms = {k: v for k, v in out.terms.items() if k in weights and v.requires_grad}
    res: dict[str, dict[str, float]] = {}
    vecs: dict[str, torch.Tensor] = {}
    names = list(terms)
    for i, k in enumerate(names):
        params = groups["trunk"] + groups["roi"]
        grads = torch.autograd.grad(weights[k] * terms[k], params, retain_graph=i < len(names) - 1, allow_unused=True)
        n_trunk = len(groups["trunk"])
        trunk = _flat(grads[:n_trunk], groups["trunk"])
        roi = _flat(grads[n_trunk:], groups["roi"])
        vecs[k] = trunk
        res[k] = {"trunk": float(trunk.norm()), "roi": float(roi.norm())}
    if "sup" in vecs:
        s = vecs["sup"].double()
        for k, v in vecs.items():
            v = v.double()
            denom = float(s.norm() * v.norm())
            res[k]["cos_sup_trunk"] = float(torch.dot(s, v)) / denom if denom > 0 else 0.0
    model.train(was)
    return res


@torch.no_grad()
def reestimate_batchnorm(model, batches) -> int:
    """Recompute the backbone's BatchNorm running means and variances as the plain average over
    ``batches`` (dicts with ``image`` and ``centres`` of intact faces); returns the images used."""
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    was = model.training
    model.backbone.train()
    seen = 0
    for b in batches:
        model.backbone(b["image"], b["centres"])
        seen += int(b["image"].shape[0])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was)
    return seen
