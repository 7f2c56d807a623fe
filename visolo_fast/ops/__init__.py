"""The fused ops, each in its own module with its reference, fake registration and dispatch.

NB: each op's function has its module's name. Importing the module here, before binding
the function, makes the function the package attribute for good: a later
``import visolo_fast.ops.memory_read`` finds the module in ``sys.modules`` and does not
rebind ``visolo_fast.ops.memory_read``.
"""

from visolo_fast.ops.dynamic_masks import dynamic_masks
from visolo_fast.ops.grid_weight import grid_weight
from visolo_fast.ops.mask_dedup import mask_dedup
from visolo_fast.ops.mask_intersections import mask_intersections
from visolo_fast.ops.matrix_nms import matrix_nms
from visolo_fast.ops.memory_read import memory_read
from visolo_fast.ops.resize_masks import resize_masks

__all__ = ["dynamic_masks", "grid_weight", "mask_dedup", "mask_intersections", "matrix_nms", "memory_read", "resize_masks"]
