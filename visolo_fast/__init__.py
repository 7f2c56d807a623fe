"""visolo_fast: a fast, faithful runtime for VISOLO online video instance segmentation."""

from visolo_fast.backends import BACKENDS, BackendUnavailable, available_backends
from visolo_fast.checkpoint import CheckpointError, load_model, save_model
from visolo_fast.config import VisoloConfig
from visolo_fast.engine import (Engine, FrameResult, PackageError, StageTimes, Tracker, TrackSummary, VideoResult,
                                export_package, segment_video, step_many)
from visolo_fast.evaluation import EvaluationError, evaluate_ytvis
from visolo_fast.io.live import Frame, Source, open_source
from visolo_fast.io.video import InputError
from visolo_fast.model import FrameOutput, MemoryEntry, VisoloNet
from visolo_fast.preprocess import preprocess

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "CheckpointError",
    "Engine",
    "EvaluationError",
    "Frame",
    "FrameOutput",
    "FrameResult",
    "InputError",
    "MemoryEntry",
    "PackageError",
    "Source",
    "StageTimes",
    "TrackSummary",
    "Tracker",
    "VisoloConfig",
    "VideoResult",
    "VisoloNet",
    "available_backends",
    "evaluate_ytvis",
    "export_package",
    "load_model",
    "open_source",
    "preprocess",
    "save_model",
    "segment_video",
    "step_many",
]
