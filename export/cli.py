"""``rtatl-export``: checkpoint -> ONNX (fp32, fp16, int8) and TensorRT, every file verified.

    rtatl-export --ckpt runs/bp4d_fold1/last.ckpt --out models/ --fp16 --int8 --calib faces/
    rtatl-export --verify models/model.int8.onnx --ckpt runs/bp4d_fold1/last.ckpt --faces faces/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rtatl_sdk.errors import ExportError, RTATLError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtatl-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, help="checkpoint written by rtatl-train")
    ap.add_argument("--out", type=Path, help="output folder")
    ap.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (for GPU providers)")
    ap.add_argument("--int8", action="store_true", help="also write model.int8.onnx (static QDQ, needs --calib)")
    ap.add_argument("--calib", type=Path, help="images/videos with real faces for INT8 calibration")
    ap.add_argument("--faces", type=Path, help="images/videos with real faces for the parity checks (default: --calib)")
    ap.add_argument("--trt", action="store_true", help="also build model.engine (TensorRT, fp16; needs a CUDA GPU)")
    ap.add_argument("--max-flip", type=float, default=0.05, help="int8: largest share of flipped AU decisions accepted")
    ap.add_argument("--verify", type=Path, metavar="MODEL", help="re-run the checks on an exported file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.verify:
            from .api import verify_model

            rep = verify_model(args.verify, args.ckpt, args.faces, max_flip=args.max_flip)
            print(rep.summary())
            return 0 if rep.passed else 1
        if not args.ckpt or not args.out:
            ap.error("--ckpt and --out are required (or use --verify MODEL)")
        if args.out.exists() and not args.out.is_dir():
            raise ExportError(f"--out {args.out}: exists and is not a folder (the model files are written into a folder)")
        from .api import export_model

        for rep in export_model(args.ckpt, args.out, fp16=args.fp16, int8=args.int8, calib=args.calib, trt=args.trt,
                                faces=args.faces, max_flip=args.max_flip):
            print(rep.summary())
    except RTATLError as exc:
        print(f"rtatl-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
