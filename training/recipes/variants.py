"""Variants of the default model's recipe, each a dict of overrides over the shipped recipe's
settings, trained on the base run's data (the same faces, targets, steps and seed).

    python -m training.recipes.variants no_aux --base runs/v3 --out runs/v3_no_aux

``RECIPE`` is the command line the default model v3 was trained with (README, "Models"); a variant
changes only what its entry says. ``no_aux`` switches both auxiliary tasks off (RoI inpainting and
optical-flow estimation: the Backbone of the paper's Table 1), so a FACS-coded check can tell
whether they help on real coding. Like the recipe, a killed run continues when started again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

#: the default model v3's recipe (``training.recipes.default_model``'s flags)
RECIPE: dict[str, str | None] = {
    "--aus": "OPENFACE", "--intensity": None, "--emotions": None, "--graph": "light", "--cap-per-emotion": "3000",
    "--steps": "2000", "--eval-every": "500", "--seed": "0", "--variant": "rtatl",
    "--neutral-rate": "0.01", "--neutral-rate-au": "AU06=0.03 AU12=0.03",
}
#: name -> overrides of ``RECIPE`` (a flag with None is a switch)
VARIANTS: dict[str, dict[str, str | None]] = {
    "no_aux": {"--variant": "backbone"},
}


def argv_for(name: str, faces: Path, media: Path, out: Path) -> list[str]:
    """The recipe's command line with the variant's overrides."""
    flags = {**RECIPE, **VARIANTS[name]}
    argv = ["--faces", str(faces), "--media", str(media), "--out", str(out)]
    for k, v in flags.items():
        argv += [k] if v is None else [k, *v.split()]
    return argv


def share_data(base: Path, out: Path) -> None:
    """``out`` trains on ``base``'s data: a link to its data folder and a copy of its summary."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "data").exists():
        os.symlink(os.path.relpath(base / "data", out), out / "data")
    if not (out / "data_summary.json").exists():
        shutil.copyfile(base / "data_summary.json", out / "data_summary.json")


def main(argv=None) -> int:
    from . import default_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variant", choices=sorted(VARIANTS))
    ap.add_argument("--base", type=Path, required=True, help="the default model's run folder (its data are reused)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--faces", type=Path, default=Path("../shared/faces"))
    ap.add_argument("--media", type=Path, default=Path("media"))
    args = ap.parse_args(argv)
    if not (args.base / "data_summary.json").is_file():
        print(f"variants: error: --base {args.base}: no finished data (data_summary.json)", file=sys.stderr)
        return 2
    share_data(args.base, args.out)
    (args.out / "variant.json").write_text(json.dumps({"variant": args.variant, "overrides": VARIANTS[args.variant],
                                                       "base": str(args.base)}, indent=1))
    return default_model.main(argv_for(args.variant, args.faces, args.media, args.out))


if __name__ == "__main__":
    sys.exit(main())
