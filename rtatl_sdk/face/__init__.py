"""Face detection, 478-point landmarking mapped to 68 points, and alignment."""

from .detector import FaceBox, RetinaFaceDetector
from .landmarker import FaceLandmarker, LandmarkResult
from .pipeline import Face, FacePipeline, largest_face

__all__ = ["Face", "FaceBox", "FaceLandmarker", "FacePipeline", "LandmarkResult", "RetinaFaceDetector", "largest_face"]
