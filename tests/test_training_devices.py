"""Device choice and resume across devices, tested on CPU with CUDA's answers stood in for."""

import pytest

torch = pytest.importorskip("torch")

from rtatl_sdk.errors import TrainingError  # noqa: E402
from training.train import _device, load_scaler_state  # noqa: E402


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


CASES = {  # (run.device, local rank, world size) -> device, or the error's words
    "auto, one process": (("auto", 0, 1), "cuda:0"),
    "auto, second rank": (("auto", 1, 2), "cuda:1"),
    "cuda, second rank": (("cuda", 1, 2), "cuda:1"),
    "cuda:1, one process": (("cuda:1", 0, 1), "cuda:1"),
    "cpu under torchrun": (("cpu", 1, 2), "cpu"),
    "cuda:0 under torchrun": (("cuda:0", 1, 2), "each rank takes its own GPU"),
    "no such GPU": (("cuda:3", 0, 1), "has 2 GPU"),
    "third rank of two GPUs": (("cuda", 2, 3), "has 2 GPU"),
    "not a device": (("gpu0", 0, 1), "not a device"),
    "other backend": (("mps", 0, 1), "only auto, cpu, cuda"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_device_for_every_value_and_rank_layout(case, two_gpus):
    (spec, local_rank, world), want = CASES[case]
    if want.startswith(("cuda", "cpu")):
        assert str(_device(spec, local_rank, world)) == want
    else:
        with pytest.raises(TrainingError, match=want):
            _device(spec, local_rank, world)


def test_without_cuda_auto_is_cpu_and_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert str(_device("auto", 0)) == "cpu"
    with pytest.raises(TrainingError, match="CUDA is not available"):
        _device("cuda", 0)


class _Scaler:
    """GradScaler's resume surface: an enabled scaler refuses an empty state, as torch's does."""

    def __init__(self, enabled):
        self.enabled, self.loaded = enabled, None

    def is_enabled(self):
        return self.enabled

    def load_state_dict(self, state):
        if not state:
            raise RuntimeError("The source state dict is empty")
        self.loaded = state


def test_a_cpu_checkpoint_resumes_with_amp_on_a_gpu():
    gpu = _Scaler(enabled=True)
    load_scaler_state(gpu, {})  # saved by a CPU / amp=false run
    assert gpu.loaded is None  # a fresh scale, no error
    load_scaler_state(gpu, {"scale": 1024.0})
    assert gpu.loaded == {"scale": 1024.0}
    cpu = _Scaler(enabled=False)
    load_scaler_state(cpu, {"scale": 1024.0})  # a GPU checkpoint resumed on CPU: nothing to restore
    assert cpu.loaded is None
    real = torch.amp.GradScaler("cuda", enabled=False)
    load_scaler_state(real, {})  # torch's own disabled scaler takes it too
