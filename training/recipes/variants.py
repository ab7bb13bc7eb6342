"""Variants of the default model's recipe, each a dict of overrides over the shipped recipe's
settings, trained on the base run's data (the same faces, targets, steps and seed).

    python -m training.recipes.variants no_aux --base runs/v3 --out runs/v3_no_aux

``RECIPE`` is the default model v3's recipe (the settings of README "Models"' command); a variant
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
from types import MappingProxyType

from rtatl_sdk.errors import RTATLError

from .spec import Recipe

#: the default model v3's recipe (``spec.Recipe``'s settings; README, "Models")
RECIPE = MappingProxyType({
    "aus": "OPENFACE", "intensity": True, "emotions": True, "graph": "light", "cap_per_emotion": 3000,
    "steps": 2000, "eval_every": 500, "seed": 0, "variant": "rtatl",
    "neutral_rate": 0.01, "neutral_rate_au": MappingProxyType({6: 0.03, 12: 0.03}),
})
#: name -> overrides of ``RECIPE``
VARIANTS = MappingProxyType({
    "no_aux": MappingProxyType({"variant": "backbone"}),
})


def recipe_for(name: str, faces: Path, media: Path, out: Path, variants=VARIANTS) -> Recipe:
    """The shipped recipe with the variant's overrides, reading ``faces`` and ``media`` into ``out``."""
    over = {k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in {**RECIPE, **variants[name]}.items()}
    return Recipe.parse({**over, "faces": faces, "media": media, "out": out}, f"variant {name}")


def share_data(base: Path, out: Path) -> None:
    """``out`` trains on ``base``'s data: a link to its data folder and a copy of its summary."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "data").exists():
        os.symlink(os.path.relpath(base / "data", out), out / "data")
    if not (out / "data_summary.json").exists():
        shutil.copyfile(base / "data_summary.json", out / "data_summary.json")


def main(argv=None) -> int:
    import logging

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        rec = recipe_for(args.variant, args.faces, args.media, args.out)
        share_data(args.base, args.out)
        (args.out / "variant.json").write_text(json.dumps({"variant": args.variant, "overrides": dict(VARIANTS[args.variant]),
                                                           "base": str(args.base)}, indent=1))
        report = default_model.run(rec)
    except RTATLError as exc:
        print(f"variants: error: {exc}", file=sys.stderr)
        return 2
    if report is not None:
        print((rec.out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
