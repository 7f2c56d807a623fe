"""Builds visolo_fast._C: the C++ ops always, the CUDA kernels when the
installed torch has CUDA and a CUDA toolkit is found.

Environment:
  TORCH_CUDA_ARCH_LIST   GPU architectures to compile for (default "8.0;9.0",
                         which also lets the build run on a machine without a GPU).
  CUDA_HOME              the CUDA toolkit (default: /usr/local/cuda if it exists,
                         else torch's own search).
  VISOLO_FAST_WITH_CUDA  "0" builds the CPU ops only even with a CUDA torch.
  MAX_JOBS               parallel compile jobs (default: the CPUs this process may use).

Sources compile with ninja (torch's BuildExtension uses it when `ninja` is on PATH) into
build/temp/, which every build shares: an editable install and a wheel of the same tree
reuse each other's objects, and a rebuild compiles only the sources that changed.
"""

import glob
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))

os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
os.environ.setdefault("MAX_JOBS", str(len(os.sched_getaffinity(0))))
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
    # -fopenmp: at::parallel_for (an inline template, csrc/parallel.h) runs the CPU loops on
    # ATen's OpenMP threads only where compiled with it; libgomp.so.1 is then torch's own
    # (torch/lib/libgomp.so.1, already loaded under that name), one thread pool for both.
    extra = {"cxx": ["-O3", "-ffp-contract=off", "-fopenmp"]}
    kwargs = dict(
        name="visolo_fast._C",
        extra_link_args=["-fopenmp"],
        include_dirs=[ROOT],
        define_macros=[("Py_LIMITED_API", "0x030B0000")],
        py_limited_api=True,
    )
    if _with_cuda():
        sources += rel(glob.glob(os.path.join(ROOT, "kernels", "*.cu")))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        return cpp_extension.CUDAExtension(sources=sources, extra_compile_args=extra, **kwargs)
    return cpp_extension.CppExtension(sources=sources, extra_compile_args=extra, **kwargs)


class BuildExtension(cpp_extension.BuildExtension):
    """torch's BuildExtension (ninja), compiling into build/temp/ for every kind of build.

    NB: an editable install otherwise compiles in a new temporary folder each time; and
    setup(options={"build_ext": ...}) does not reach it, as the editable build resets the
    command and looks its options up by the class's name."""

    def initialize_options(self):
        super().initialize_options()
        self.build_temp = os.path.join(ROOT, "build", "temp")


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
