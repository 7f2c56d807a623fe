"""The online engine: memory policy, grid weights, instance extraction, association, results."""

from visolo_fast.engine.instances import FrameInstances, extract_instances
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.stages import StageTimes
from visolo_fast.engine.tracker import FrameResult, Tracker, VideoResult, segment_video, step_many

__all__ = ["FrameInstances", "FrameResult", "MemoryBank", "StageTimes", "Tracker", "VideoResult", "extract_instances",
           "segment_video", "step_many"]
