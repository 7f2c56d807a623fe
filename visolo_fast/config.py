"""Every knob of VISOLO inference in one dataclass; the defaults are the official
configuration (``base_ytvis_coco.yaml`` and the project's ``config.py``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class VisoloConfig:
    num_classes: int = 40  # 40 for YouTube-VIS 2019/2021, 80 for the COCO pre-training
    grid: tuple[int, int] = (12, 21)  # S1 x S2 category / kernel grid
    input_size: tuple[int, int] = (352, 624)  # every frame is resized to exactly this (H, W)
    in_dim: int = 1024  # res4 channels of ResNet-50
    dim: int = 256  # head width, mask-feature and kernel dim
    norm_groups: int = 32  # GroupNorm groups in the heads
    pixel_mean: tuple[float, float, float] = (123.675, 116.280, 103.530)  # RGB, 0..255
    pixel_std: tuple[float, float, float] = (58.395, 57.120, 57.375)
    score_thr: float = 0.1  # category score threshold
    mask_thr: float = 0.5  # mask binarisation
    update_thr: float = 0.05  # score kept after Matrix NMS
    tracking_thr: float = 0.1  # association threshold
    nms_pre: int = 500  # candidates into Matrix NMS
    max_per_frame: int = 100  # kept after Matrix NMS
    nms_kernel: str = "gaussian"  # or "linear"
    nms_sigma: float = 2.0
    dedup_thr: float = 0.5  # IoU* duplicate removal
    # True: reproduce the official outputs, quirks included (README, "Deviations"): a frame
    # whose only kept grid is grid 0 counts as empty, and a kept grid with an empty mask
    # gets a NaN score (two such grids, whatever their labels, wipe out the frame in Matrix NMS).
    # False: grid 0 counts like any grid, and grids with empty masks are dropped before NMS.
    official_quirks: bool = True
    # None: the official memory, one more entry every 5 frames for as long as the video
    # lasts (each frame reads all of it: an endless stream slows down and grows without
    # bound). N >= 3: at most N entries; the oldest long-term entry after frame 0 makes
    # room (outputs then differ from the official ones once the cap is reached).
    max_memory_frames: int | None = None
    # None: the official rule, a lost instance stays a re-identification candidate for as
    # long as the stream lasts (the candidates, and the work of matching them, grow with
    # the stream's age). N >= 1: a track is lost in each frame it is absent from; a lost
    # track may be re-identified after up to N such frames in a row (last seen in frame f,
    # it can come back up to frame f + N + 1); absent from frame f + N + 1 too, it is lost
    # for more than N frames: it stops being a candidate and ends, reported once, by the
    # FrameResult of frame f + N + 1 (its ``ended``). A track seen in every frame does not
    # end. Outputs differ from the official ones from the first frame where a track would
    # have come back later than that (it starts a new track instead).
    max_lost_frames: int | None = None

    def __post_init__(self):
        def need(ok: bool, what: str, got) -> None:
            if not ok:
                raise ValueError(f"VisoloConfig: {what}, got {got!r}")

        need(self.num_classes >= 1, "num_classes must be >= 1", self.num_classes)
        need(len(self.grid) == 2 and min(self.grid) >= 1, "grid must be two sizes >= 1", self.grid)
        need(len(self.input_size) == 2 and all(s >= 16 and s % 16 == 0 for s in self.input_size),
             "input_size must be (H, W), multiples of 16 (the res4 stride)", self.input_size)
        need(self.dim % 2 == 0 and self.dim % self.norm_groups == 0 and (self.dim // 2) % self.norm_groups == 0,
             f"dim and dim / 2 must be multiples of norm_groups={self.norm_groups}", self.dim)
        # NB: one rule with the C++ tracker (TrackerOptions): the similarities it is compared to
        # are sigmoids, so a value outside [0, 1] (or NaN, which every comparison fails) is a mistake.
        thr = self.tracking_thr
        need(isinstance(thr, (int, float)) and not isinstance(thr, bool) and 0 <= thr <= 1,
             "tracking_thr must be a number in [0, 1] (the similarities are sigmoids)", thr)
        need(self.nms_kernel in ("gaussian", "linear"), "nms_kernel must be 'gaussian' or 'linear'", self.nms_kernel)
        need(self.max_memory_frames is None or (isinstance(self.max_memory_frames, int) and self.max_memory_frames >= 3),
             "max_memory_frames must be None or an integer >= 3", self.max_memory_frames)
        lost = self.max_lost_frames
        need(lost is None or (isinstance(lost, int) and not isinstance(lost, bool) and lost >= 1),
             "max_lost_frames must be None or an integer >= 1", lost)
        need(len(self.pixel_mean) == 3 and len(self.pixel_std) == 3, "pixel_mean and pixel_std need 3 values",
             (self.pixel_mean, self.pixel_std))

    @property
    def num_grids(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VisoloConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"VisoloConfig: unknown fields {unknown}")
        tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
        return cls(**{**values, **tuples})
