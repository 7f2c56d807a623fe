"""pycocotools is needed for COCO RLEs only, Pillow for image files only: `import
visolo_fast` and the engines work without them (a GPU machine's image has no pycocotools,
and maybe no Pillow), and the RLE functions say what is missing."""

import subprocess
import sys

import pytest
import torch

# NB: a fresh interpreter, so that no earlier test has imported pycocotools; None in
# sys.modules makes `import pycocotools` fail as if it were not installed.
WITHOUT = "import sys\nfor m in ('pycocotools', 'pycocotools.mask', 'PIL', 'PIL.Image'):\n    sys.modules[m] = None\n"


def test_import_without_pycocotools_and_pillow():
    code = WITHOUT + "import visolo_fast, visolo_fast.io, visolo_fast.io.shapes, visolo_fast.evaluation\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("call", ["encode_rle", "evaluate_ytvis", "make_shapes_dataset"])
def test_rle_functions_name_pycocotools(call, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)
    from visolo_fast.evaluation import evaluate_ytvis
    from visolo_fast.io.shapes import make_shapes_dataset
    from visolo_fast.io.ytvis import encode_rle

    calls = {"encode_rle": lambda: encode_rle(torch.ones(1, 4, 4, dtype=torch.bool)),
             "evaluate_ytvis": lambda: evaluate_ytvis({"videos": [], "annotations": [], "categories": []}, []),
             "make_shapes_dataset": lambda: make_shapes_dataset(tmp_path)}
    with pytest.raises(ImportError, match=r"pycocotools is required for .*: pip install pycocotools"):
        calls[call]()
