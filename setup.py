"""Builds visolo_fast._C: the C++ ops always, the CUDA kernels when the
installed torch has CUDA and a CUDA toolkit is found.

Environment:
  TORCH_CUDA_ARCH_LIST   GPU architectures to compile for (default "8.0;9.0",
                         which also lets the build run on a machine without a GPU).
  CUDA_HOME              the CUDA toolkit (default: /usr/local/cuda if it exists,
                         else torch's own search).
  VISOLO_FAST_WITH_CUDA  "0" builds the CPU ops only even with a CUDA torch.
"""

import glob
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))

os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
# NB: torch looks for CUDA next to the first `nvcc` on PATH; a wrapper script in
# /usr/local/bin then makes it pick /usr/local. Set before importing cpp_extension,
# which reads CUDA_HOME once at import.
if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ and os.path.isdir("/usr/local/cuda/include"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def _with_cuda() -> bool:
    if os.environ.get("VISOLO_FAST_WITH_CUDA") == "0":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _extension():
    rel = lambda paths: sorted(os.path.relpath(p, ROOT) for p in paths)  # noqa: E731
    sources = rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp"))) + ["csrc/python/module.cpp"]
    # NB: no contraction of a * b + c into one FMA on the host: the CPU loops (generic and
    # AVX-512 paths alike) round as the header math is written, so they give the same bits.
    extra = {"cxx": ["-O3", "-ffp-contract=off"]}
    kwargs = dict(
        name="visolo_fast._C",
        include_dirs=[ROOT],
        define_macros=[("Py_LIMITED_API", "0x030B0000")],
        py_limited_api=True,
    )
    if _with_cuda():
        sources += rel(glob.glob(os.path.join(ROOT, "kernels", "*.cu")))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        return cpp_extension.CUDAExtension(sources=sources, extra_compile_args=extra, **kwargs)
    return cpp_extension.CppExtension(sources=sources, extra_compile_args=extra, **kwargs)


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
