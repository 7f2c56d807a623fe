"""The VISOLO network in plain PyTorch."""

from visolo_fast.model.visolo import FrameOutput, MemoryEntry, VisoloNet

__all__ = ["FrameOutput", "MemoryEntry", "VisoloNet"]
