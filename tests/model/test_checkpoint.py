"""Official checkpoints (keys and shapes from tests/data/official-checkpoint-keys.txt, a copy
of the spec's list) and our own format: what loads, and every way loading must refuse."""

import ast
import pathlib

import numpy as np
import pytest
import torch

import visolo_fast as vf
from visolo_fast.checkpoint import official_state_dict

KEYS_FILE = pathlib.Path(__file__).parent.parent / "data" / "official-checkpoint-keys.txt"


def official_keys() -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in KEYS_FILE.read_text().splitlines() if line.strip()]
    return {key: ast.literal_eval(shape) for key, shape, _ in rows}


def random_official_state(num_classes: int = 40, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values under the official keys and shapes, built from the list, not from our model."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_keys().items():
        if key.startswith("model.Category_branch_post.pred."):
            shape = (num_classes, *shape[1:])
        if key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    for key in [k for k in state if k.startswith("tracking_module.")]:
        state[key] = state["model.Tracking_branch." + key[len("tracking_module."):]].clone()
    return state


def write_official(path, state) -> str:
    # As detectron2's Checkpointer: the model next to optimizer/scheduler state and the iteration.
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
                "scheduler": {"last_epoch": 139999}, "iteration": 139999}, path)
    return str(path)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    state = random_official_state()
    return write_official(tmp_path_factory.mktemp("ckpt") / "model_final.pth", state), state


def test_our_names_are_the_official_names():
    ours = {k: tuple(v.shape) for k, v in official_state_dict(vf.VisoloNet()).items()}
    assert ours == official_keys()


def test_official_checkpoint_loads_every_value(official_file):
    path, state = official_file
    model = vf.load_model(path)
    assert not model.training and model.config.num_classes == 40
    loaded = model.state_dict()
    assert len(loaded) == len([k for k in state if k.startswith("model.")])
    for key, value in loaded.items():
        assert torch.equal(value, state["model." + key]), key


def test_loaded_model_runs_with_official_shapes(official_file):
    model = vf.load_model(official_file[0])
    with torch.inference_mode():
        out = model.forward_frame(torch.randn(1, 3, 352, 624))
    assert out.scores.shape == (1, 40, 12, 21) and torch.isfinite(out.scores).all()


def test_coco_checkpoint_has_80_classes(tmp_path):
    path = write_official(tmp_path / "coco.pth", random_official_state(num_classes=80))
    assert vf.load_model(path).config.num_classes == 80
    assert vf.load_model(path, num_classes=80).Category_branch_post.pred.out_channels == 80
    with pytest.raises(vf.CheckpointError, match=r"coco.pth: has 80 classes .* num_classes=40"):
        vf.load_model(path, num_classes=40)


def test_bare_official_state_dict_loads(tmp_path):
    state = random_official_state()
    torch.save(state, tmp_path / "bare.pth")
    assert torch.equal(vf.load_model(tmp_path / "bare.pth").Memory_module.conv1.weight, state["model.Memory_module.conv1.weight"])


def _broken(tmp_path, edit) -> str:
    state = random_official_state()
    edit(state)
    return write_official(tmp_path / "broken.pth", state)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.pop("model.Mask_branch.convR4.bias"), r"1 missing keys: Mask_branch.convR4.bias"),
        (lambda s: s.pop("model.backbone.res4.5.conv3.norm.running_var"), r"missing keys: backbone.res4.5.conv3.norm.running_var"),
        (lambda s: s.__setitem__("model.backbone.res5.0.conv1.weight", torch.zeros(1)), r"unexpected keys: backbone.res5.0.conv1.weight"),
        (lambda s: s.__setitem__("model.Kernel_branch.pred.weight", torch.zeros(256, 256, 3, 3)),
         r"wrong shape: Kernel_branch.pred.weight: \(256, 256, 3, 3\) instead of \(256, 256, 1, 1\)"),
        (lambda s: s.__setitem__("model.Memory_module.conv1.bias", torch.zeros(256, dtype=torch.int64)), r"not floating-point tensors: Memory_module.conv1.bias"),
        (lambda s: s.__setitem__("optimizer_state", torch.zeros(1)), r"unexpected keys outside 'model.' and 'tracking_module.': optimizer_state"),
        (lambda s: s["tracking_module.track_Q_conv1.weight"].add_(1), r"tracking_module.track_Q_conv1.weight differs from model.Tracking_branch.track_Q_conv1.weight"),
        (lambda s: s.pop("model.Category_branch_post.pred.weight"), r"cannot read the number of classes"),
    ],
    ids=["missing", "missing-bn-buffer", "unexpected", "misshaped", "not-float", "stray-key", "duplicate-differs", "no-class-head"],
)
def test_bad_keys_are_named(tmp_path, edit, match):
    path = _broken(tmp_path, edit)
    with pytest.raises(vf.CheckpointError, match=match) as info:
        vf.load_model(path)
    assert path in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(vf.CheckpointError, match=r"nowhere.pth: no such file"):
        vf.load_model(tmp_path / "nowhere.pth")


def test_a_directory_is_not_a_checkpoint(tmp_path):
    (tmp_path / "weights.pth").mkdir()
    with pytest.raises(vf.CheckpointError, match=r"weights.pth: a directory, not a checkpoint file") as info:
        vf.load_model(tmp_path / "weights.pth")
    assert "no such file" not in str(info.value)


def one_line(exc) -> str:
    text = str(exc)
    assert "\n" not in text and "\x1b" not in text, text  # no paragraph of torch's advice, no terminal escapes
    return text


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_truncated_file(tmp_path, official_file, legacy):
    if legacy:
        torch.save(official_file[1], tmp_path / "full.pth", _use_new_zipfile_serialization=False)
        data = (tmp_path / "full.pth").read_bytes()
    else:
        data = pathlib.Path(official_file[0]).read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    for trusted in (False, True):
        with pytest.raises(vf.CheckpointError, match=r"cut.pth: not a readable PyTorch checkpoint: expected a file "
                                                     r"written by torch.save, got a (zip archive|pickle) of .* truncated") as info:
            vf.load_model(tmp_path / "cut.pth", trusted=trusted)
        # trusting a damaged file would not help: no advice to
        assert "trusted" not in one_line(info.value) and not info.value.needs_trust


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b""], ids=["text", "empty"])
def test_not_a_checkpoint(tmp_path, content):
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(vf.CheckpointError, match=r"x.pth: not a PyTorch checkpoint") as info:
        vf.load_model(tmp_path / "x.pth")
    what = "it starts with b'hello, I" if content else "an empty file (0 bytes)"
    assert what in one_line(info.value) and "trusted" not in str(info.value)


def random_bytes(seed: int, head: bytes = b"") -> bytes:
    return head + np.random.default_rng(seed).integers(0, 256, 500 + 300 * seed, dtype=np.uint8).tobytes()


# Random bytes: the weights-only unpickler refuses them as it refuses a checkpoint's pickled
# objects ("Weights only load failed"); heads that look like a pickle, torch's magic number
# or a zip make them look more like a checkpoint still.
@pytest.mark.parametrize("seed,head", [(seed, b"") for seed in range(8)] + [
    (8, b"\x80\x02"), (9, b"\x80\x02\x8a\x0a"), (10, b"PK\x03\x04"), (11, b"PK\x03\x04" + bytes(22) + b"\x08\x00")])
def test_random_bytes_are_not_a_checkpoint(tmp_path, seed, head):
    (tmp_path / "r.pth").write_bytes(random_bytes(seed, head))
    for trusted in (False, True):
        with pytest.raises(vf.CheckpointError, match=r"r.pth: not a PyTorch checkpoint: expected a file written by "
                                                     r"torch.save, got ") as info:
            vf.load_model(tmp_path / "r.pth", trusted=trusted)
        assert "trusted" not in one_line(info.value) and not info.value.needs_trust


def test_a_pickled_object_in_a_damaged_checkpoint_is_not_a_reason_to_trust_it(tmp_path):
    """A torch.save zip whose data.pkl was damaged (bytes changed at its end, the zip intact):
    whatever the weights-only load says of it, trusting the file would not make it whole."""
    import zipfile

    torch.save({"a": torch.zeros(3)}, tmp_path / "whole.pth")
    with zipfile.ZipFile(tmp_path / "whole.pth") as z, zipfile.ZipFile(tmp_path / "bad.pth", "w") as out:
        for item in z.infolist():
            data = z.read(item)
            out.writestr(item, data[:-3] + b"c\x00." if item.filename.endswith("/data.pkl") else data)
    with pytest.raises(vf.CheckpointError, match=r"bad.pth: not a readable PyTorch checkpoint: .*a zip archive") as info:
        vf.load_model(tmp_path / "bad.pth")
    assert "trusted" not in one_line(info.value) and not info.value.needs_trust


def test_a_gpu_that_torch_cannot_see_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", torch.device("cuda:0")):
        # at once: before the file is read (this one does not even exist)
        with pytest.raises(ValueError, match=r"^load_model: device='cuda(:0)?': no GPU is visible to torch \(") as info:
            vf.load_model(tmp_path / "absent.pth", device=device)
        assert one_line(info.value).endswith("use device='cpu'")
    with pytest.raises(ValueError, match=r"load_model: device='gpu' is not a device"):
        vf.load_model(tmp_path / "absent.pth", device="gpu")


@pytest.mark.parametrize("obj", [[1, 2, 3], {"weights": torch.zeros(2)}, {"model": 3}], ids=["list", "other-dict", "model-not-dict"])
def test_loadable_but_not_visolo(tmp_path, obj):
    torch.save(obj, tmp_path / "other.pth")
    with pytest.raises(vf.CheckpointError, match=r"other.pth: not a VISOLO checkpoint"):
        vf.load_model(tmp_path / "other.pth")


class _Payload:
    pass


def test_arbitrary_pickles_are_refused_unless_trusted(tmp_path):
    torch.save({"model": random_official_state(), "extra": _Payload()}, tmp_path / "p.pth")
    with pytest.raises(vf.CheckpointError, match=r"p.pth: not a readable .*trusted=True") as info:
        vf.load_model(tmp_path / "p.pth")
    # one line that names the object found, and the advice apart for callers with their own (the CLI's --trusted)
    assert "it holds a pickled tests.model.test_checkpoint._Payload" in one_line(info.value)
    assert info.value.needs_trust and "trusted" not in info.value.detail and info.value.detail in str(info.value)
    assert vf.load_model(tmp_path / "p.pth", trusted=True).config.num_classes == 40


def test_our_format_round_trips_exactly(tmp_path):
    torch.manual_seed(3)
    config = vf.VisoloConfig(num_classes=7, score_thr=0.2, nms_kernel="linear")
    model = vf.VisoloNet(config).eval()
    vf.save_model(model, tmp_path / "ours.pt")
    back = vf.load_model(tmp_path / "ours.pt")
    assert back.config == config
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        assert all(torch.equal(u, v) for u, v in zip(model(x)[:6], back(x)[:6]))


@pytest.mark.parametrize(
    "obj,match",
    [
        ({"format": "visolo_fast", "version": 1, "config": {}}, r"must hold a 'config' and a 'state_dict'"),
        ({"format": "visolo_fast", "version": 1, "config": {"grid": [0, 3]}, "state_dict": {}}, r"bad config .*grid must be two sizes >= 1"),
        ({"format": "visolo_fast", "version": 9, "config": {}, "state_dict": {}}, r"format version 9, this library reads 1"),
    ],
    ids=["no-state", "bad-config", "version"],
)
def test_broken_own_format(tmp_path, obj, match):
    torch.save(obj, tmp_path / "own.pt")
    with pytest.raises(vf.CheckpointError, match=match) as info:
        vf.load_model(tmp_path / "own.pt")
    assert "own.pt" in str(info.value)
