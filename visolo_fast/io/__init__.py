"""Frames and results in and out of visolo_fast: video files, image folders, cameras,
mp4 overlays, YouTube-VIS json."""

from visolo_fast.io.video import FrameSource, InputError, VideoWriter
from visolo_fast.io.ytvis import DatasetError, ResultsRecorder, Video, YtvisDataset, encode_rle, to_ytvis

__all__ = ["DatasetError", "FrameSource", "InputError", "ResultsRecorder", "Video", "VideoWriter", "YtvisDataset",
           "encode_rle", "to_ytvis"]
