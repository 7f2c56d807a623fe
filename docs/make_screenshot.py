"""Makes docs/overlay.jpg, the README's picture: frame 6 of the bundled sample as the CLI
draws it. The weights are random, nudged (tests/engine/lively.py) so that several tracks
appear: the masks show what the overlay looks like, not what VISOLO finds.

    python docs/make_screenshot.py
"""

import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import visolo_fast as vf  # noqa: E402
from tests.engine.lively import lively_net  # noqa: E402
from visolo_fast.classes import YTVIS_2019  # noqa: E402
from visolo_fast.sample import sample_frames  # noqa: E402
from visolo_fast.viz import draw_overlay  # noqa: E402

frames = sample_frames(8)
tracker = vf.Tracker(lively_net(4))
results = [tracker.step(f) for f in frames]
r = results[6]
image = draw_overlay(frames[6], r.masks.numpy(), r.track_ids.tolist(), r.labels.tolist(), r.scores.tolist(), YTVIS_2019)
Image.fromarray(np.ascontiguousarray(image)).save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "overlay.jpg"), quality=85)
