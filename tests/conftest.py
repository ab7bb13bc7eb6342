import os
from pathlib import Path

import pytest

from tests.helpers import REPO


def media_dir() -> Path:
    env = os.environ.get("RTATL_MEDIA")
    return Path(env) if env else REPO / "media"


@pytest.fixture(scope="session")
def media() -> Path:
    d = media_dir()
    if not (d / "single_face.jpg").is_file():
        pytest.skip(f"real face media not found in {d} (set RTATL_MEDIA to the media folder)")
    return d


@pytest.fixture(scope="session")
def pipeline():
    """The face pipeline with the store's models; missing models fail with the fix in the message."""
    from rtatl_sdk.face import FacePipeline

    pipe = FacePipeline(blendshapes=True)
    yield pipe
    pipe.close()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """Until a trained default model ships, export a randomly initialised one (as users would)."""
    pytest.importorskip("torch")
    from export import export_model
    from rtatl_sdk.contract.au import AU_SETS
    from training.checkpoint import write_initial_checkpoint
    from training.config import TrainConfig

    d = tmp_path_factory.mktemp("model")
    ckpt = write_initial_checkpoint(d / "init.ckpt", TrainConfig.model_validate({"data": {"cache": "-"}}), AU_SETS["BP4D"])
    export_model(ckpt, d)
    return d / "model.onnx"


@pytest.fixture(scope="session")
def det(model_path):
    from rtatl_sdk import AUDetector

    d = AUDetector(model_path)
    yield d
    d.close()


@pytest.fixture(scope="session")
def default_det():
    """The shipped default model through AUDetector() (skips where $RTATL_MODEL overrides it)."""
    from rtatl_sdk import AUDetector

    if os.environ.get("RTATL_MODEL"):
        pytest.skip("$RTATL_MODEL overrides the default model")
    d = AUDetector()
    yield d
    d.close()


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)
