"""The online engine: a frame's network pass, memory policy, grid weights, instance
extraction, association, results."""

from visolo_fast.engine.instances import FrameInstances, InstanceSlots, extract_instances
from visolo_fast.engine.memory import MemoryBank
from visolo_fast.engine.network import Engine, FramePass
from visolo_fast.engine.stages import StageTimes
from visolo_fast.engine.tracker import FrameResult, Tracker, VideoResult, segment_video, step_many

__all__ = ["Engine", "FrameInstances", "FramePass", "FrameResult", "InstanceSlots", "MemoryBank", "StageTimes", "Tracker",
           "VideoResult", "extract_instances", "segment_video", "step_many"]
