"""preprocess against PIL's bilinear resize (the official test transform)."""

import numpy as np
import pytest
import torch
from PIL import Image

import visolo_fast as vf

MEAN = np.array(vf.VisoloConfig().pixel_mean).reshape(1, 3, 1, 1)
STD = np.array(vf.VisoloConfig().pixel_std).reshape(1, 3, 1, 1)


def grey_levels(x: torch.Tensor) -> np.ndarray:
    """The uint8 image the network saw, undoing the normalisation."""
    return np.rint(x.double().numpy() * STD + MEAN).astype(np.int64)


def pil_resize(frame: np.ndarray, size=(352, 624)) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR)).astype(np.int64)


def smooth_frame(h, w, seed=0):
    # A photograph-like frame (smooth gradients and edges) plus noise, not only noise.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([127 + 120 * np.sin(xx / 37 + c) * np.cos(yy / 23 - c) for c in range(3)], -1)
    base[h // 3: h // 2, w // 4: w // 2] = 250
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(720, 1280), (360, 640), (1080, 1920), (353, 625), (200, 300), (100, 177)])
def test_within_one_grey_level_of_pil(h, w):
    frame = smooth_frame(h, w)
    got = grey_levels(vf.preprocess(frame))[0].transpose(1, 2, 0)
    want = pil_resize(frame)
    assert got.shape == want.shape == (352, 624, 3)
    assert np.abs(got - want).max() <= 1
    assert (got != want).mean() < 0.02  # off-by-one only where PIL's fixed-point rounding differs


def test_identical_when_already_the_input_size():
    frame = smooth_frame(352, 624)
    x = vf.preprocess(frame)
    expected = (torch.from_numpy(frame).permute(2, 0, 1)[None].float() - torch.tensor(MEAN).float()) / torch.tensor(STD).float()
    assert torch.equal(x, expected)


def test_input_forms_agree():
    frames = [smooth_frame(120, 200, seed=s) for s in range(3)]
    from_list = vf.preprocess(frames)
    assert from_list.shape == (3, 3, 352, 624) and from_list.dtype == torch.float32
    assert torch.equal(vf.preprocess(np.stack(frames)), from_list)
    assert torch.equal(vf.preprocess(torch.from_numpy(np.stack(frames))), from_list)
    assert torch.equal(vf.preprocess(frames[1]), from_list[1:2])
    assert torch.equal(vf.preprocess([torch.from_numpy(f) for f in frames]), from_list)


def test_other_input_size():
    x = vf.preprocess(smooth_frame(100, 100), size=(64, 96))
    assert x.shape == (1, 3, 64, 96)
    assert np.abs(grey_levels(x)[0].transpose(1, 2, 0) - pil_resize(smooth_frame(100, 100), (64, 96))).max() <= 1


@pytest.mark.parametrize(
    "frames,error,match",
    [
        (np.zeros((10, 10), np.uint8), ValueError, r"must be RGB, H x W x 3 each, got shape \(1, 10, 10\)|got shape \(10, 10\)"),
        (np.zeros((10, 10, 4), np.uint8), ValueError, r"must be RGB.*\(1, 10, 10, 4\).*grayscale or RGBA"),
        (np.zeros((10, 10, 3), np.float32), TypeError, r"must be uint8 RGB \(0..255\), got torch.float32"),
        ([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8)], ValueError, r"same size, frame 0 is \(10, 10, 3\), frame 1 is \(10, 12, 3\)"),
        ([], ValueError, r"no frames given"),
        ("frame.jpg", TypeError, r"got str"),
        (np.zeros((0, 10, 3), np.uint8), ValueError, r"empty frames"),
    ],
    ids=["grey", "rgba", "float", "sizes-differ", "empty-list", "string", "zero-height"],
)
def test_bad_frames(frames, error, match):
    with pytest.raises(error, match=match):
        vf.preprocess(frames)
