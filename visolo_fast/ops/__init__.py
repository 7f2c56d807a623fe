"""The fused ops, each in its own module with its reference, fake registration and dispatch."""

from visolo_fast.ops.add_coords import add_coords

__all__ = ["add_coords"]
