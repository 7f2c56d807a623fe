"""The per-frame network: official shapes, the memory semantics, determinism, backends."""

import pytest
import torch

import visolo_fast as vf
from tests.conftest import BACKEND_DEVICES, require_backend
from visolo_fast.model import FrameOutput, MemoryEntry

SMALL = (64, 96)  # a multiple of 16: res4 is 4 x 6, the grids are still 12 x 21


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = vf.VisoloNet().eval()
    # Random GroupNorm affines too, so that no head is an identity on the test inputs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm." in name:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    return model


def frames(n, size=SMALL, seed=0):
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def test_official_shapes(net):
    x = frames(1, (352, 624))
    first = net.forward_frame(x)
    want = {"frame_f": (1, 256, 12, 21), "cat_f": (1, 256, 12, 21), "kernel_f": (1, 256, 12, 21),
            "mask_features": (1, 256, 88, 156), "query": (1, 252, 128), "key": (1, 252, 128),
            "scores": (1, 40, 12, 21), "kernels": (1, 256, 12, 21)}
    assert {k: tuple(getattr(first, k).shape) for k in FrameOutput._fields} == want
    later = net.forward_frame(x, [first.memory_entry] * 3)
    assert {k: tuple(getattr(later, k).shape) for k in FrameOutput._fields} == want
    for out in (first, later):
        assert all(torch.isfinite(t).all() for t in out)
        assert ((out.scores >= 0) & (out.scores <= 1)).all()


@torch.inference_mode()
def test_first_frame_reads_itself(net):
    # An empty memory is the frame's own entry as the memory (spec section 2, step 2).
    x = frames(1)
    alone = net.forward_frame(x)
    self_read = net.forward_frame(x, [alone.memory_entry])
    for name in ("scores", "kernels", "mask_features", "frame_f", "cat_f", "kernel_f"):
        torch.testing.assert_close(getattr(self_read, name), getattr(alone, name), rtol=0, atol=0)


@torch.inference_mode()
def test_memory_read_softmaxes_over_all_entries_at_once(net):
    # One softmax over T * S keys: the order of the entries cannot matter to the read; the
    # frame's own tracking embeddings do not depend on the memory at all.
    entries = [net.forward_frame(frames(1, seed=s)).memory_entry for s in range(1, 4)]
    x = frames(1, seed=9)
    a = net.forward_frame(x, entries)
    b = net.forward_frame(x, [entries[1], entries[0], entries[2]])
    torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.kernels, b.kernels, rtol=1e-5, atol=1e-5)
    c = net.forward_frame(x, entries[:2])
    assert not torch.allclose(a.kernels, c.kernels, atol=1e-4), "dropping an entry must change the read"
    assert torch.equal(a.query, c.query) and torch.equal(a.key, c.key)


@torch.inference_mode()
def test_memory_read_by_hand(net):
    # Spec section 2, step 2, written out: logits of the current frame's queries against the
    # references of all T entries, one softmax over all T * S keys, values = the memory conv
    # of each entry's pre-read features, added to the current features.
    entries = [net.forward_frame(frames(1, seed=s)).memory_entry for s in (1, 2)]
    out = net.forward_frame(frames(1, seed=5), entries)
    tb, mm = net.Tracking_branch, net.Memory_module
    q = tb.query(out.frame_f)[0]  # [S, D]
    logits = torch.cat([q @ tb.reference(e.frame_f)[0].T for e in entries], dim=1)  # [S, 2S]
    weights = torch.softmax(logits, dim=1)
    for feat, post in (("cat_f", lambda x: torch.sigmoid(net.Category_branch_post(x))), ("kernel_f", net.Kernel_branch.post)):
        values = torch.cat([mm.conv1(getattr(e, feat))[0].flatten(1).T for e in entries])  # [2S, dim]
        read = (weights @ values).T.reshape(1, -1, *net.config.grid)
        want = post(getattr(out, feat) + read)
        got = out.scores if feat == "cat_f" else out.kernels
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # A softmax per entry (then averaged) would differ.
    per_entry = torch.cat([torch.softmax(part, 1) for part in logits.split(logits.shape[0], 1)], 1) / 2
    assert (per_entry - weights).abs().max() > 1e-3


@torch.inference_mode()
def test_forward_frame_is_the_passes(net):
    """forward_frame = encode -> the memory's keys and values -> read -> predict; the frame's
    tracking embeddings are the query and reference branches' (sharing their convolutions)."""
    prev = net.forward_frame(frames(1, seed=1))
    x = frames(1, seed=2)
    cur = net.forward_frame(x, [prev.memory_entry])
    enc = net.encode(x)
    keys, values = net.memory_keys_values([prev.memory_entry])
    assert keys.shape == (1, 252, 128) and values.shape == (1, 252, 512)
    scores, kernels = net.predict(net.read(enc, keys, values))
    for name, want in zip(FrameOutput._fields, (*enc, scores, kernels)):
        torch.testing.assert_close(getattr(cur, name), want, rtol=0, atol=0, msg=name)
    tb = net.Tracking_branch
    torch.testing.assert_close(cur.query, tb.query(cur.frame_f), rtol=0, atol=0)
    torch.testing.assert_close(cur.key, tb.reference(cur.frame_f), rtol=0, atol=0)
    torch.testing.assert_close(keys, tb.reference(prev.frame_f), rtol=0, atol=0)
    torch.testing.assert_close(net.memory_values(prev.cat_f, prev.kernel_f), values, rtol=0, atol=0)


@torch.inference_mode()
def test_batch_equals_one_by_one(net):
    x = frames(2)
    mem = [net.forward_frame(frames(2, seed=4)).memory_entry]
    both = net.forward_frame(x, mem)
    for b in range(2):
        one = net.forward_frame(x[b:b + 1], [MemoryEntry(*(t[b:b + 1] for t in mem[0]))])
        for u, v in zip(both, one):
            # Batched convolutions sum in another order: float32 noise only.
            torch.testing.assert_close(u[b:b + 1], v, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_deterministic(net):
    x = frames(1)
    a, b = net.forward_frame(x), net.forward_frame(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("backend,device", [b for b in BACKEND_DEVICES if b.values[0] != "reference"])
@torch.inference_mode()
def test_backends_agree_with_reference(net, backend, device):
    require_backend(backend, device, "memory_read")
    x = frames(1)
    ref = net.forward_frame(x, backend="reference")
    ref2 = net.forward_frame(x, [ref.memory_entry], backend="reference")
    net.to(device)  # in place: the module fixture is shared, hence the move back below
    try:
        mem = [MemoryEntry(*(t.to(device) for t in ref.memory_entry))]
        out = net.forward_frame(x.to(device), mem, backend=backend)
    finally:
        net.to("cpu")
    for name in FrameOutput._fields:
        # The backend is the memory read's: it sums in another order, float noise after the
        # heads (and TF32 convolutions on a GPU).
        torch.testing.assert_close(getattr(out, name).cpu(), getattr(ref2, name), rtol=1e-3, atol=1e-3, msg=name)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda n: n.forward_frame(torch.zeros(1, 4, 64, 96)), ValueError, r"images must be \[B, 3, H, W\], got \(1, 4, 64, 96\)"),
        (lambda n: n.forward_frame(torch.zeros(1, 3, 60, 96)), ValueError, r"multiples of 16, got \(60, 96\)"),
        (lambda n: n.forward_frame(torch.zeros(1, 3, 64, 96), backend="gpu"), ValueError, r"backend must be one of"),
        (lambda n: n.forward_frame(torch.zeros(1, 3, 64, 96), backend="cuda"), vf.BackendUnavailable, r"backend 'cuda' runs on CUDA tensors"),
        (lambda n: n.forward_frame(torch.zeros(2, 3, 64, 96), [MemoryEntry(*[torch.zeros(1, 256, 12, 21)] * 3)]),
         ValueError, r"memory\[0\].frame_f must be \[2, 256, 12, 21\] torch.float32 on cpu \(as the images\), got \[1, 256, 12, 21\]"),
        (lambda n: n.forward_frame(torch.zeros(1, 3, 64, 96), [MemoryEntry(*[torch.zeros(1, 256, 12, 21, dtype=torch.float64)] * 3)]),
         ValueError, r"memory\[0\].frame_f must be .* torch.float32 .* got \[1, 256, 12, 21\] torch.float64"),
        (lambda n: n.forward_frame(torch.zeros(1, 3, 64, 96), [(torch.zeros(1, 256, 12, 21),) * 2]),
         TypeError, r"memory\[0\] must be a MemoryEntry"),
    ],
    ids=["channels", "size", "backend-name", "backend-device", "memory-shape", "memory-dtype", "memory-tuple"],
)
@torch.inference_mode()
def test_bad_input(net, call, error, match):
    with pytest.raises(error, match=match):
        call(net)


def test_torch_compile_fullgraph():
    # The whole per-frame network traces into one graph (aot_eager: the check is the trace,
    # not inductor's code generation, which takes minutes on two cores).
    torch.manual_seed(0)
    model = vf.VisoloNet(vf.VisoloConfig(dim=64)).eval()
    x = frames(1)
    with torch.inference_mode():
        eager = model.forward_frame(x, backend="cpp")
        mem = [eager.memory_entry]
        compiled = torch.compile(model.forward_frame, fullgraph=True, backend="aot_eager")
        out = compiled(x, mem, backend="cpp")
        want = model.forward_frame(x, mem, backend="cpp")
    for u, v in zip(out, want):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_config_validation():
    with pytest.raises(ValueError, match=r"dim and dim / 2 must be multiples of norm_groups=32, got 48"):
        vf.VisoloConfig(dim=48)
    with pytest.raises(ValueError, match=r"nms_kernel must be 'gaussian' or 'linear', got 'box'"):
        vf.VisoloConfig(nms_kernel="box")
    assert vf.VisoloConfig.from_dict(vf.VisoloConfig(grid=(5, 7)).to_dict()) == vf.VisoloConfig(grid=(5, 7))
