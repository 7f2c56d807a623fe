"""Pictures of results: overlays of tracked masks on frames."""

from visolo_fast.viz.overlay import draw_overlay, track_colour

__all__ = ["draw_overlay", "track_colour"]
