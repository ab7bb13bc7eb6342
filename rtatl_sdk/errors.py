"""One exception hierarchy for the whole toolkit.

Every error a user can trigger derives from :class:`RTATLError`; an error about user input
names the input and the reason. "No face in this frame" is an empty result, never an error.
"""

from __future__ import annotations


class RTATLError(Exception):
    """Base class of every error raised by rtatl_sdk, training and export."""


class InputError(RTATLError, ValueError):
    """A user-supplied input (image, path, array, option) cannot be used.

    ``input_name`` says which input; the message says why.
    """

    def __init__(self, input_name: str, reason: str):
        self.input_name = str(input_name)
        self.reason = reason
        super().__init__(f"{self.input_name}: {reason}")


class ModelNotFoundError(RTATLError, FileNotFoundError):
    """A model file could not be located; the message lists every place searched."""


class ModelCardError(RTATLError):
    """A model card is invalid or disagrees with the SDK's geometry."""


class CheckpointError(RTATLError):
    """A training checkpoint is missing, unreadable, or does not match the model."""


class CacheError(RTATLError):
    """A training cache (rtatl-prep) cannot be written or does not match the run's settings."""


class TrainingError(RTATLError):
    """A training run cannot go on: too little data, an unusable device, a non-finite loss."""


class FetchError(RTATLError):
    """The face models could not be fetched from their carrier wheels (offline, wrong file)."""


class ModelFileError(RTATLError):
    """A model file is truncated, of the wrong format, or unreadable."""


class ClosedError(RTATLError):
    """The object (detector, face pipeline, engine) was closed; make a new one."""


class ExportError(RTATLError):
    """An export step failed or its output did not pass verification (``rtatl-export``)."""
