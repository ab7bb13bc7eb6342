"""Every shell command in the README's fenced blocks either runs here, exactly as written (in a
folder holding the small inputs it names), or is listed below with the reason it cannot. A new
command in the README fails this test until it is one or the other."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

#: commands that cannot run here, by their first words, with the reason
CANNOT_RUN = {
    "make demo": "the set-up command itself: it is what CI's environment is built with",
    "make test": "runs this test suite",
    "rtatl-detect --camera 0": "needs a camera",
    "rtatl-detect --cluster ray://head:10001": "needs a Ray cluster at head:10001",
    "pip install": "installs packages (the test environment has them)",
    "rtatl-prep BP4D /data/BP4D": "needs the BP4D dataset in /data",
    "rtatl-prep DISFA /data/DISFA": "needs the DISFA dataset in /data",
    "rtatl-prep unlabelled /data/EmotioNet": "needs EmotioNet images in /data",
    "rtatl-train --config training/configs/bp4d.yaml": "trains 20,000 steps on a BP4D cache",
    "rtatl-eval --ckpt": "needs a trained checkpoint and a BP4D cache",
    "rtatl-figures --ckpt": "needs a trained checkpoint and a BP4D cache",
    "torchrun": "needs several GPUs or nodes",
    "rtatl-export --ckpt runs/bp4d_fold1": "needs a trained checkpoint (and '[--trt]' marks an option)",
    "rtatl-export --verify": "needs a trained checkpoint",
    "python -m training.recipes.default_model": "trains the default model (about an hour)",
    "rtatl-export --ckpt runs/v2/model.ckpt": "needs v2's recipe checkpoint",
    "rtatl-export --ckpt runs/v3/model.ckpt": "needs the default model's recipe checkpoint",
    "python -m training.recipes.variants": "trains a variant of the default model (about 40 minutes)",
}
#: commands run from the repository root (they name its files); the rest run in a scratch folder
FROM_REPO = ("rtatl-stats",)


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks (continuation lines joined, comments removed)."""
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            cmd = re.sub(r"\s+#.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def _skipped(cmd: str) -> str | None:
    return next((why for start, why in CANNOT_RUN.items() if cmd.startswith(start)), None)


def test_every_readme_command_is_run_or_has_a_reason():
    cmds = readme_commands()
    assert len(cmds) >= 20  # the parser finds the blocks
    runnable = [c for c in cmds if _skipped(c) is None]
    assert runnable, "no README command runs here"
    unused = [k for k in CANNOT_RUN if not any(c.startswith(k) for c in cmds)]
    assert unused == [], f"reasons for commands the README no longer has: {unused}"


@pytest.fixture(scope="module")
def scratch(media, tmp_path_factory):
    """A folder with the inputs the README's commands name: photos/, talk.mp4, long.mp4, archive/, model.onnx."""
    from rtatl_sdk import store

    d = tmp_path_factory.mktemp("readme")
    (d / "photos").mkdir()
    shutil.copy(media / "single_face.jpg", d / "photos" / "portrait.jpg")
    shutil.copy(media / "single_face.mp4", d / "talk.mp4")
    shutil.copy(media / "single_face.mp4", d / "long.mp4")
    shutil.copy(media / "single_face.mp4", d / "single_face.mp4")
    (d / "archive").mkdir()
    shutil.copy(media / "multi_face.jpg", d / "archive" / "group.jpg")
    (d / "model.onnx").symlink_to(store.PACKAGE_MODELS / "model.onnx")
    return d


def _run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.media
@pytest.mark.parametrize("cmd", [c for c in readme_commands() if _skipped(c) is None])
def test_readme_command_runs_as_written(cmd, scratch):
    if "--cluster" in cmd:
        pytest.importorskip("ray")
    cwd = REPO if cmd.startswith(FROM_REPO) else scratch
    res = _run(cmd, cwd)
    assert res.returncode == 0, f"{cmd}\n{res.stderr[-2000:]}"
    if "--out results.csv" in cmd:
        assert (scratch / "results.csv").stat().st_size > 0 and (scratch / "au.png").is_file()
        assert any((scratch / "out").iterdir())  # the annotations
    if "single_face.mp4 --openface out/" in cmd:  # OpenFace's layout, one row per frame from frame 1
        lines = (scratch / "out" / "single_face.csv").read_text().splitlines()
        assert lines[0].startswith("frame,face_id,timestamp,confidence,success,gaze_0_x") and lines[1].startswith("1,")
        assert len(lines) == 1 + 72
    if "--out-dir results/" in cmd:
        assert (scratch / "results" / "manifest.json").is_file()
        assert (scratch / "results" / "group.csv").is_file()
