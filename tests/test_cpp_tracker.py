"""The C++ tracker against the Python tracker (tests/cpp/tracker_parity.py, also the ctest
cpp_tracker_parity), from pytest, where the CMake build is there: ``cmake -S . -B
build-cmake -G Ninja ... && cmake --build build-cmake`` (the README's "Deploy without
Python"), or the build folder named by VISOLO_FAST_CMAKE_BUILD."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_cpp_tracker_gives_the_python_trackers_results():
    build = os.environ.get("VISOLO_FAST_CMAKE_BUILD", os.path.join(REPO, "build-cmake"))
    segment, test_rle = (os.path.join(build, name) for name in ("visolo_segment", "test_rle"))
    if not (os.access(segment, os.X_OK) and os.access(test_rle, os.X_OK)):
        pytest.skip(f"no C++ build in {build} (cmake -S . -B build-cmake -G Ninja, then cmake --build build-cmake; "
                    f".ci/run runs it as the ctest cpp_tracker_parity after the CMake build)")
    done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "cpp", "tracker_parity.py"), segment, test_rle],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    said = [line for line in done.stdout.splitlines() if line.startswith("ok: ")]
    assert len(said) >= 8 and any("the official memory, 64 frames" in line for line in said), done.stdout
