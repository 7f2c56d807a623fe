"""CMakeLists.txt's configure step: the options it takes from the environment, as setup.py does."""

import os
import pathlib
import shutil
import subprocess

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("ninja")), reason="needs cmake and ninja")
def test_cmake_honours_visolo_fast_with_cuda_0_from_the_environment(tmp_path):
    """VISOLO_FAST_WITH_CUDA=0 turns CUDA off even where a CUDA compiler is found (configure
    only; where no toolkit is installed, OFF is the default anyway)."""
    done = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path), "-G", "Ninja", "-DBUILD_TESTING=OFF",
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        capture_output=True, text=True, env={**os.environ, "VISOLO_FAST_WITH_CUDA": "0"})
    assert done.returncode == 0, done.stderr
    assert "visolo_fast: VISOLO_FAST_WITH_CUDA=OFF" in done.stdout
    assert "VISOLO_FAST_WITH_CUDA:BOOL=OFF" in (tmp_path / "CMakeCache.txt").read_text()
