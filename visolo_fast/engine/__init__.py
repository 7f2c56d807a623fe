"""The online engine: the frame function, streams and their memory, instance extraction,
association, tracks and results."""

from visolo_fast.engine.instances import FrameInstances, InstanceSlots, extract_instances
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.engine import Engine, FramePass, Stream
from visolo_fast.engine.package import PackageError, export_package
from visolo_fast.engine.stages import StageTimes
from visolo_fast.engine.tracker import FrameResult, Tracker, TrackSummary, VideoResult, segment_video, step_many

__all__ = ["Engine", "FrameInstances", "FramePass", "FrameResult", "InstanceSlots", "MemoryBank", "PackageError", "StageTimes", "Stream", "Tracker", "TrackSummary",
           "VideoResult", "export_package", "extract_instances", "segment_video", "step_many"]
