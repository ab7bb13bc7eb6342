"""Precisions of exported AU models: one table that export writes by and the SDK reads by.

A model file's precision is part of its name (``model.onnx`` fp32, ``model.fp16.onnx``,
``model.int8.onnx``; a TensorRT engine ``model.engine`` is built from the fp16 file).
"""

from __future__ import annotations

from pathlib import Path

#: precision -> file name of the exported model (``rtatl-export`` writes these into its folder)
FILE_NAMES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx",
              "tensorrt-fp16": "model.engine"}
#: precision -> what marks it inside any file name (``name.int8.onnx``); fp32 has no mark
MARKS = {"fp16": ".fp16.", "int8": ".int8."}
#: file suffixes of serialized TensorRT engines
ENGINE_SUFFIXES = (".engine", ".plan")


def precision_of(path: str | Path) -> str:
    """The precision a model file holds, from its name: ``int8``, ``fp16``, ``tensorrt-fp16`` or ``fp32``."""
    p = Path(path)
    if p.suffix in ENGINE_SUFFIXES:
        return "tensorrt-fp16"
    for precision, mark in MARKS.items():
        if mark in p.name:
            return precision
    return "fp32"
