"""The RTATL network as the paper lays it out, one module per part:

- ``backbone``: ResNet-18 trunk and top-down fusion (sec. 3.1)
- ``roi``: RoI boxes and the per-AU RoI modules (sec. 3.2)
- ``relation``: the AU-relation transformer (Eq. 1) and the GCN baseline
- ``roii``: RoI inpainting: crop, whiten, G, D, C (sec. 3.3)
- ``ofe``: single-image optical-flow estimation (sec. 3.4)
- ``ssl``: Table 1's other self-supervised tasks
- ``graph``: the composition, export wrapper, parameter groups and steps

The losses (Eq. 2-9) are in ``training.losses``.
"""

from .backbone import load_pretrained, trunk_state_dict
from .graph import (
    INTENSITY_MAX,
    RTATL,
    SSL_TASKS,
    VARIANTS,
    BackboneOutput,
    InferenceModel,
    RTATLBackbone,
    StepOutput,
    count_parameters,
)

__all__ = ["INTENSITY_MAX", "RTATL", "SSL_TASKS", "VARIANTS", "BackboneOutput", "InferenceModel", "RTATLBackbone",
           "StepOutput", "count_parameters", "load_pretrained", "trunk_state_dict"]
