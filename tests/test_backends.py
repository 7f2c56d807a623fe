"""The backend switch, and the package without its compiled extension."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import visolo_fast as vf
from visolo_fast import backends


def test_available_backends_tell_the_truth():
    status = vf.available_backends("cpu")
    assert set(status) == {"reference", "triton", "cpp", "cuda"}
    assert status["reference"] is None and status["cpp"] is None  # CI builds the extension
    assert "runs on CUDA tensors" in status["cuda"]
    on_gpu = vf.available_backends("cuda")
    if torch.cuda.is_available():
        assert "runs on CPU tensors" in on_gpu["cpp"]
    else:
        assert all(reason == "no GPU is visible to torch" for reason in on_gpu.values())


def test_cuda_kernels_are_linked_when_torch_has_cuda():
    # CI builds with the CUDA torch: the CUDA kernel must be in the extension even though
    # no GPU can run it here.
    for op in ("dynamic_masks", "grid_weight", "mask_dedup_keep", "mask_intersections", "matrix_nms_decay",
               "memory_read", "resize_masks"):
        linked = torch._C._dispatch_has_kernel_for_dispatch_key(f"visolo_fast::{op}", "CUDA")
        assert linked == (torch.version.cuda is not None), op


def test_auto_without_triton_interpreter_never_picks_triton_on_cpu():
    assert backends.resolve("auto", torch.device("cpu"), "x", ("triton",)) == "reference"


def test_package_runs_without_the_extension():
    # A fresh interpreter where visolo_fast._C cannot be imported: the reference path runs,
    # and asking for a compiled backend says what is missing and how to build it.
    code = textwrap.dedent("""
        import sys, torch
        sys.modules["visolo_fast._C"] = None  # makes `import visolo_fast._C` fail
        import visolo_fast as vf
        from visolo_fast.ops import mask_intersections
        masks = torch.rand(3, 4, 5) > 0.5
        assert mask_intersections(masks).shape == (3, 3)
        net = vf.VisoloNet(vf.VisoloConfig(dim=64)).eval()
        with torch.inference_mode():
            assert net.forward_frame(torch.randn(1, 3, 64, 96)).scores.shape == (1, 40, 12, 21)
        try:
            mask_intersections(masks, backend="cpp")
        except vf.BackendUnavailable as e:
            print(e)
        else:
            raise SystemExit("backend='cpp' should have failed")
    """)
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "visolo_fast._C is not importable" in done.stdout
    assert "pip install --no-build-isolation -e ." in done.stdout


def test_backend_unavailable_carries_the_backend_and_the_reason():
    import pickle

    with pytest.raises(vf.BackendUnavailable) as info:
        backends.resolve("cuda", torch.device("cpu"), "grid_weight", ("cuda",))
    exc = info.value
    assert (exc.op, exc.backend, exc.implemented) == ("grid_weight", "cuda", True)
    assert exc.reason == backends.why_unavailable("cuda", torch.device("cpu"), "grid_weight")
    assert str(exc) == f"grid_weight: backend 'cuda' is unavailable: {exc.reason}"  # the message as it was
    with pytest.raises(vf.BackendUnavailable) as info:
        backends.resolve("cpp", torch.device("cpu"), "matrix_nms_decay", ())
    exc = info.value
    assert (exc.backend, exc.implemented) == ("cpp", False)
    assert str(exc) == "matrix_nms_decay: backend 'cpp' is not implemented for this op (it has ('reference',))"
    # Ray hands a worker's exceptions back pickled: the fields come through
    back = pickle.loads(pickle.dumps(exc))
    assert (back.op, back.backend, back.reason, back.implemented, str(back)) == \
        (exc.op, exc.backend, exc.reason, exc.implemented, str(exc))
