"""add_coords: every backend against the float64 reference on the CPU."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from visolo_fast import backends
from visolo_fast.ops.add_coords import add_coords, add_coords_reference
from tests.conftest import BACKEND_DEVICES, TRITON_DEVICE, require_backend

# The x channels are copied, so exact in every dtype. The coordinates are rounded once
# from double; the reference's torch.linspace can be an ulp or two off in float32, and:
# NB: Triton's interpreter rounds float32 -> bfloat16 toward zero, not to nearest, so a
# bfloat16 coordinate may be one bfloat16 ulp (2^-8 near 1) away when interpreted.
COORD_ATOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 2**-8 + 1e-6}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (1, 4, 12, 21), (3, 1, 22, 39), (1, 1024, 22, 39), (0, 3, 4, 4), (2, 0, 3, 3)]


def check_against_reference(x: torch.Tensor, out: torch.Tensor) -> None:
    expected = add_coords_reference(x.cpu().double())
    assert out.shape == expected.shape and out.dtype == x.dtype and out.device == x.device
    assert out.is_contiguous()
    C = x.shape[1]
    # The feature channels are copies: bit-exact.
    torch.testing.assert_close(out[:, :C].cpu(), x.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(out[:, C:].cpu().double(), expected[:, C:], rtol=0, atol=COORD_ATOL[x.dtype])


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(backend, device, dtype, shape):
    require_backend(backend, device, "add_coords")
    x = torch.randn(shape, dtype=torch.float64).to(dtype).to(device)
    check_against_reference(x, add_coords(x, backend=backend))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous_input(backend, device):
    require_backend(backend, device, "add_coords")
    base = torch.randn(2, 9, 14, 6, device=device)
    x = base.permute(0, 1, 3, 2)[:, ::2]  # [2, 5, 6, 14], strided in three dimensions
    assert not x.is_contiguous()
    check_against_reference(x, add_coords(x, backend=backend))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES[1:])
def test_coordinates_are_symmetric(backend, device):
    # The centre of an odd grid is exactly 0 and the two halves mirror each other
    # (not so for the reference: torch.linspace gives -1.5e-8 at the centre of 21).
    require_backend(backend, device, "add_coords")
    out = add_coords(torch.zeros(1, 1, 21, 39, device=device), backend=backend).cpu()
    ys, xs = out[0, 1, :, 0], out[0, 2, 0, :]
    assert ys[10] == 0 and xs[19] == 0
    assert torch.equal(ys, -ys.flip(0)) and torch.equal(xs, -xs.flip(0))
    assert ys[0] == -1 and ys[-1] == 1 and xs[0] == -1 and xs[-1] == 1


def test_cpp_and_triton_agree_bit_for_bit():
    # Both round the same double-precision formula once.
    require_backend("cpp", "cpu", "add_coords")
    require_backend("triton", TRITON_DEVICE, "add_coords")
    x = torch.randn(2, 3, 17, 31)
    assert torch.equal(add_coords(x, backend="cpp"), add_coords(x.to(TRITON_DEVICE), backend="triton").cpu())


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(0, 3), c=st.integers(0, 6), h=st.integers(1, 40), w=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES), backend=st.sampled_from(["cpp", "triton"]),
)
def test_property_random_shapes(b, c, h, w, dtype, backend):
    device = TRITON_DEVICE if backend == "triton" else "cpu"
    require_backend(backend, device, "add_coords")
    x = torch.randn(b, c, h, w, dtype=torch.float64).to(dtype).to(device)
    check_against_reference(x, add_coords(x, backend=backend))


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.zeros(3, 4, 5), ValueError, r"x must be \[B, C, H, W\], got a tensor of shape \(3, 4, 5\)"),
        (torch.zeros(1, 2, 3, 4, dtype=torch.int64), TypeError, "x must be float.*got torch.int64"),
        (torch.zeros(1, 2, 0, 4), ValueError, "H >= 1 and W >= 1"),
    ],
)
@pytest.mark.parametrize("backend", ["reference", "cpp", "triton"])
def test_bad_input_is_named(x, error, match, backend):
    with pytest.raises(error, match=match):
        add_coords(x, backend=backend)


def test_cpp_op_checks_its_own_input():
    # Called directly, past the Python wrapper, the C++ op still refuses bad input clearly.
    with pytest.raises(RuntimeError, match=r"add_coords: x must be \[B, C, H, W\]"):
        torch.ops.visolo_fast.add_coords(torch.zeros(2, 3))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        add_coords(torch.zeros(1, 1, 2, 2), backend="tpu")


def test_cuda_backend_on_cpu_tensor_says_why():
    with pytest.raises(backends.BackendUnavailable, match="backend 'cuda' runs on CUDA tensors"):
        add_coords(torch.zeros(1, 1, 2, 2), backend="cuda")


def test_auto_picks_cpp_on_cpu():
    assert backends.resolve("auto", torch.device("cpu"), "add_coords", ("cuda", "triton", "cpp")) == "cpp"


def test_opcheck_cpp():
    for x in [torch.randn(2, 3, 5, 7), torch.randn(1, 2, 4, 4, dtype=torch.float16)]:
        torch.library.opcheck(torch.ops.visolo_fast.add_coords.default, (x,))


def test_opcheck_triton():
    require_backend("triton", TRITON_DEVICE, "add_coords")
    from visolo_fast.triton.add_coords import add_coords_triton  # registers the op

    assert add_coords_triton is not None
    checks = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if backends.triton_interpreted():
        # NB: AOT dispatch traces into the Triton launch, and the interpreter cannot run a
        # kernel on the traced (storage-less) tensors: that check runs on a GPU only.
        checks = checks[:3]
    x = torch.randn(2, 3, 5, 7, device=TRITON_DEVICE)
    torch.library.opcheck(torch.ops.visolo_fast.add_coords_triton.default, (x,), test_utils=checks)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_torch_compile_fullgraph(backend):
    # Through the public function: the backend choice must not break the graph.
    x = torch.randn(2, 3, 12, 21)

    def f(t):
        return add_coords(t * 2, backend=backend) + 1

    compiled = torch.compile(f, fullgraph=True, backend="inductor")
    # Inductor generates its own linspace for the reference: an ulp away at most.
    torch.testing.assert_close(compiled(x), f(x), rtol=0, atol=0 if backend == "cpp" else 1e-6)


def test_torch_export_keeps_the_op():
    class M(torch.nn.Module):
        def forward(self, t):
            return torch.ops.visolo_fast.add_coords(t)

    ep = torch.export.export(M(), (torch.randn(1, 2, 3, 4),))
    assert "visolo_fast.add_coords" in str(ep.graph)
