"""Checkpoint -> inference graph -> ONNX (fp32 / fp16 / int8) -> TensorRT, each file verified.

Python API::

    from export import export_model, verify_model
    report = export_model("runs/bp4d_fold1/last.ckpt", "out/", fp16=True, int8=True, calib="faces/")
    verify_model("out/model.onnx", ckpt="runs/bp4d_fold1/last.ckpt", faces="faces/")
"""

from .api import ExportError, export_model, verify_model

__all__ = ["ExportError", "export_model", "verify_model"]
