"""grid_weight: the reference against the definition, loop by loop in float64, and every
backend against the float64 reference."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend
from visolo_fast import backends
from visolo_fast.ops import grid_weight
from visolo_fast.ops.grid_weight import grid_weight_reference


@pytest.mark.parametrize("B,E,S,S2,D", [(1, 1, 252, 252, 128), (2, 2, 7, 9, 16), (1, 2, 1, 1, 4)])
def test_reference_matches_the_definition(B, E, S, S2, D):
    g = torch.Generator().manual_seed(S)
    query, keys = torch.randn(B, S, D, generator=g), torch.randn(B, E, S2, D, generator=g)
    got = grid_weight(query, keys, backend="reference")
    assert got.shape == (B, S) and got.dtype == torch.float32
    q, k = query.double(), keys.double()
    want = torch.stack([torch.stack([
        torch.stack([torch.sigmoid(k[b, e] @ q[b, i]).max() for e in range(E)]).mean() for i in range(S)]) for b in range(B)])
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)


def test_bad_input():
    with pytest.raises(ValueError, match=r"keys must be \[B, E, S', D\]"):
        grid_weight(torch.zeros(1, 4, 8), torch.zeros(1, 2, 4, 7))
    with pytest.raises(ValueError, match="query must be"):
        grid_weight(torch.zeros(4, 8), torch.zeros(1, 2, 4, 8))


ATOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def check(query, keys, backend, device):
    got = grid_weight(query.to(device), keys.to(device), backend=backend)
    want = grid_weight_reference(query.double(), keys.double())
    assert got.shape == want.shape
    assert got.dtype == (torch.float64 if query.dtype == torch.float64 else torch.float32)
    # the inputs are the same (rounded) numbers; only the accumulation differs
    torch.testing.assert_close(got.cpu().double(), want, rtol=0, atol=ATOL[query.dtype])


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("B,E,S,S2,D", [(1, 1, 252, 252, 128), (2, 2, 7, 9, 16), (1, 2, 1, 1, 4), (0, 2, 5, 5, 8)])
def test_backends_match_reference(backend, device, dtype, B, E, S, S2, D):
    require_backend(backend, device, "grid_weight")
    if backend == "triton" and backends.triton_interpreted() and S == 252:
        S = S2 = 40  # the interpreter's budget
    g = torch.Generator().manual_seed(S + D)
    check((torch.randn(B, S, D, generator=g) * 0.3).to(dtype), (torch.randn(B, E, S2, D, generator=g) * 0.3).to(dtype),
          backend, device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_nan_propagates_as_the_reference(backend, device):
    require_backend(backend, device, "grid_weight")
    q, k = torch.randn(1, 4, 8), torch.randn(1, 2, 5, 8)
    k[0, 1, 2, 3] = float("nan")  # every query's best logit against frame 1 is NaN
    got = grid_weight(q.to(device), k.to(device), backend=backend).cpu()
    assert torch.isnan(got).all() and torch.isnan(grid_weight_reference(q, k)).all()


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), E=st.integers(1, 3), S=st.integers(1, 20), S2=st.integers(1, 20), D=st.integers(1, 20),
       backend=st.sampled_from(["cpp", "triton"]))
def test_property_random(B, E, S, S2, D, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "grid_weight")
    g = torch.Generator().manual_seed(B * E * S * S2 * D)
    check(torch.randn(B, S, D, generator=g), torch.randn(B, E, S2, D, generator=g), backend, device)


def test_opcheck_and_compile():
    q, k = torch.randn(2, 5, 8), torch.randn(2, 2, 6, 8)
    torch.library.opcheck(torch.ops.visolo_fast.grid_weight.default, (q, k))

    def f(a, b):
        return grid_weight(a, b, backend="cpp") + 1

    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="inductor")(q, k), f(q, k))
    require_backend("triton", TRITON_DEVICE, "grid_weight")
    from visolo_fast.triton.grid_weight import grid_weight_triton  # registers the op

    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.visolo_fast.grid_weight_triton.default, (q.to(TRITON_DEVICE), k.to(TRITON_DEVICE)),
                          test_utils=checks if backends.triton_interpreted() else checks + ("test_aot_dispatch_dynamic",))
    # the op as registered, called by itself (not through grid_weight's dispatch), computes the reference
    got = grid_weight_triton(q.to(TRITON_DEVICE), k.to(TRITON_DEVICE))
    torch.testing.assert_close(got.cpu().double(), grid_weight_reference(q.double(), k.double()), rtol=0,
                               atol=ATOL[torch.float32])
