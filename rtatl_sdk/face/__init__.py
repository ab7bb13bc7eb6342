"""Face detection, 478-point landmarking mapped to 68 points, and alignment."""

from .detector import RetinaFaceDetector
from .landmarker import FaceLandmarker, LandmarkResult
from .pipeline import Face, FacePipeline, largest_face

__all__ = ["Face", "FaceLandmarker", "FacePipeline", "LandmarkResult", "RetinaFaceDetector", "largest_face"]
