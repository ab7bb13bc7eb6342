"""Which torch device a run uses (``run.device`` / ``--device``), checked before any work."""

from __future__ import annotations

from rtatl_sdk.errors import TrainingError


def resolve_device(spec: str, local_rank: int = 0, world: int = 1):
    """run.device -> torch.device: "auto" (CUDA when present), "cpu", "cuda" (this process's GPU:
    ``cuda:LOCAL_RANK``, as torchrun expects) or "cuda:N" (one process only: under torchrun every
    rank would share GPU N)."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise TrainingError(f"run.device={spec}: not a device (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise TrainingError(f"run.device={spec}: only auto, cpu, cuda and cuda:N are supported")
    if not torch.cuda.is_available():
        raise TrainingError(f"run.device={spec}: CUDA is not available on this machine")
    if dev.index is None:
        dev = torch.device("cuda", local_rank)
    elif world > 1:
        raise TrainingError(f"run.device={spec}: under torchrun each rank takes its own GPU; use run.device=cuda")
    if dev.index >= torch.cuda.device_count():
        raise TrainingError(f"run.device={spec} (rank-local index {dev.index}): this machine has "
                            f"{torch.cuda.device_count()} GPU(s)")
    return dev
