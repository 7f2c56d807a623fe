"""memory_read: every backend against the float64 reference, with the error-budget rule
for float16 / bfloat16 (at most twice the error of plain PyTorch at that dtype)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend
from visolo_fast import backends
from visolo_fast.ops.memory_read import memory_read, memory_read_reference

ATOL = {torch.float64: 1e-10, torch.float32: 2e-5}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def make(B, S, T, D=32, V=48, dtype=torch.float32, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    N = T * S if T else 1
    parts = [torch.randn(B, S, D, generator=g) * scale, torch.randn(B, N, D, generator=g) * scale,
             torch.randn(B, N, V, generator=g), torch.randn(B, S, V, generator=g)]
    return [p.to(dtype) for p in parts]


def plain_torch(query, keys, values, residual):
    """The same computation in plain PyTorch at the inputs' own precision (the budget)."""
    w = torch.softmax(torch.bmm(query, keys.transpose(1, 2)).float(), dim=-1).to(query.dtype)
    return residual + torch.bmm(w, values)


def check(args, backend, device):
    got = memory_read(*[a.to(device) for a in args], backend=backend)
    assert got.dtype == args[0].dtype and got.shape == args[3].shape and got.device.type == torch.device(device).type
    want = memory_read_reference(*[a.double() for a in args])
    err = (got.cpu().double() - want).abs().max().item() if got.numel() else 0.0
    dtype = args[0].dtype
    if dtype in ATOL:
        assert err <= ATOL[dtype], f"max error {err}"
    else:  # error budget: twice plain PyTorch at this dtype, plus a small atol
        budget = (plain_torch(*args).double() - want).abs().max().item() if got.numel() else 0.0
        assert err <= 2 * budget + 1e-3, f"max error {err}, plain PyTorch {budget}"


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("T", [1, 2, 3, 9])
@pytest.mark.parametrize("B,S", [(1, 1), (1, 7), (4, 7), (1, 252)])
def test_matches_reference(backend, device, T, B, S):
    require_backend(backend, device, "memory_read")
    check(make(B, S, T, seed=T * 100 + S), backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(backend, device, dtype):
    require_backend(backend, device, "memory_read")
    check(make(2, 21, 3, dtype=dtype, seed=7), backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_official_shapes(backend, device):
    # S = 252, D = 128, V = 512; T = 40 (N = 10,080) where the interpreter can afford it
    require_backend(backend, device, "memory_read")
    T = 2 if backend == "triton" and backends.triton_interpreted() else 40
    check(make(1, 252, T, D=128, V=512, seed=40, scale=0.1), backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_extreme_logits_do_not_overflow(backend, device):
    require_backend(backend, device, "memory_read")
    q, k, v, r = make(1, 5, 3, D=16, V=16, seed=3)
    q = q * 300  # logits of about +-1e3
    got = memory_read(q.to(device), k.to(device), v.to(device), r.to(device), backend=backend).cpu()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), memory_read_reference(q.double(), k.double(), v.double(), r.double()),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous_and_empty(backend, device):
    require_backend(backend, device, "memory_read")
    q, k, v, r = make(2, 9, 2, D=8, V=12, seed=5)
    args = [q.transpose(0, 1).contiguous().transpose(0, 1), k[:, :, :], v.transpose(1, 2).contiguous().transpose(1, 2), r]
    assert not args[0].is_contiguous() and not args[2].is_contiguous()
    check(args, backend, device)
    empty = make(0, 9, 2, D=8, V=12)
    assert memory_read(*[a.to(device) for a in empty], backend=backend).shape == (0, 9, 12)
    # D = 0: every logit is 0, the read is the mean of the values
    check(make(2, 3, 2, D=0, V=5, seed=1), backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_lengths_read_the_stored_keys_only(backend, device, dtype):
    # A memory of capacity N = 4 * S, batch element b holding lengths[b] keys: the same as
    # reading its unpadded memory alone; NaN padding proves the rest is never read.
    require_backend(backend, device, "memory_read")
    S, lengths = 7, [7, 28, 15]
    q, k, v, r = make(3, S, 4, D=16, V=24, dtype=dtype, seed=11)
    for b, n in enumerate(lengths):
        k[b, n:], v[b, n:] = float("nan"), float("nan")
    got = memory_read(*[a.to(device) for a in (q, k, v, r)], backend=backend,
                      lengths=torch.tensor(lengths, device=device)).cpu()
    for b, n in enumerate(lengths):
        alone = memory_read(q[b:b + 1], k[b:b + 1, :n], v[b:b + 1, :n], r[b:b + 1], backend="reference")
        torch.testing.assert_close(got[b:b + 1], alone, rtol=0, atol=2e-5 if dtype == torch.float32 else 2e-2)
    # Without lengths the padding is read (and here poisons the result): lengths is what masks it.
    assert torch.isnan(memory_read(q, k, v, r, backend="reference")[:2]).any()


def test_lengths_checks():
    q, k, v, r = make(2, 3, 2, D=4, V=5)
    with pytest.raises(TypeError, match=r"lengths must be None or an int64 Tensor\[B\] = \[2\], got torch.int32"):
        memory_read(q, k, v, r, lengths=torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(TypeError, match=r"lengths must be None or an int64 Tensor\[B\]"):
        memory_read(q, k, v, r, lengths=torch.tensor([1]))
    with pytest.raises(RuntimeError, match=r"lengths\[1\] must lie in \[1, N = 6\], got 7"):
        memory_read(q, k, v, r, backend="cpp", lengths=torch.tensor([6, 7]))
    with pytest.raises(RuntimeError, match=r"lengths\[0\] must lie in \[1, N = 6\], got 0"):
        memory_read(q, k, v, r, backend="cpp", lengths=torch.tensor([0, 1]))


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), S=st.integers(1, 30), T=st.integers(1, 4), D=st.integers(1, 40), V=st.integers(1, 40),
       backend=st.sampled_from(["cpp", "triton"]))
def test_property_random(B, S, T, D, V, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "memory_read")
    check(make(B, S, T, D=D, V=V, seed=B + S + T + D + V), backend, device)


def test_bad_input():
    q, k, v, r = make(1, 4, 2, D=8, V=6)
    with pytest.raises(ValueError, match=r"values must be \[1, 8, 6\]"):
        memory_read(q, k, v[:, :3], r)
    with pytest.raises(ValueError, match=r"residual must be \[1, 4, 6\]"):
        memory_read(q, k, v, r[:, :, :5])
    with pytest.raises(TypeError, match="share one dtype"):
        memory_read(q, k, v.double(), r)
    with pytest.raises(RuntimeError, match=r"memory_read: keys must be \[B, N, D\]"):
        torch.ops.visolo_fast.memory_read(q, k[:, :, :3], v, r)


def test_opcheck_and_compile():
    args = make(2, 5, 2, D=8, V=6)
    torch.library.opcheck(torch.ops.visolo_fast.memory_read.default, args)
    torch.library.opcheck(torch.ops.visolo_fast.memory_read.default, [*args, torch.tensor([3, 10])])

    def f(q, k, v, r):
        return memory_read(q, k, v, r, backend="cpp") * 2

    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="inductor")(*args), f(*args))
    require_backend("triton", TRITON_DEVICE, "memory_read")
    from visolo_fast.triton.memory_read import memory_read_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.visolo_fast.memory_read_triton.default, [a.to(TRITON_DEVICE) for a in args],
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through memory_read's dispatch), computes the reference
    got = memory_read_triton(*[a.to(TRITON_DEVICE) for a in args])
    assert (got.cpu().double() - memory_read_reference(*[a.double() for a in args])).abs().max() <= ATOL[torch.float32]
