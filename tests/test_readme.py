"""The README's usage examples run as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_engine_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "segment_video" in b)
    exec(compile(example, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "torch.Size([" in out and ", 4, 360, 640])" in out
    streamed = [line.split()[0] for line in out.splitlines() if line[:1].isdigit()]
    assert streamed == ["0", "1", "2", "3"]  # the tracker's loop: one result per frame, in order


def test_readme_many_streams_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "step_many" in b)
    exec(compile(example, str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    # each stream's frame t comes back from the call that ran it
    assert lines == ["0 0", "1 0", "0 1", "1 1", "0 2", "1 2"]
