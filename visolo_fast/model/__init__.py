"""The VISOLO network in plain PyTorch."""

from visolo_fast.model.visolo import Encoded, FrameOutput, MemoryEntry, VisoloNet

__all__ = ["Encoded", "FrameOutput", "MemoryEntry", "VisoloNet"]
