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


def test_readme_ytvis_commands_run(tmp_path, monkeypatch, capsys):
    """shapes -> ytvis -> evaluate, as written (random weights at the official input size)."""
    import shlex

    from visolo_fast.cli import main

    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = next(b for b in blocks if "visolo_fast shapes" in b).strip().splitlines()
    assert [c.split()[3] for c in commands] == ["shapes", "ytvis", "evaluate"]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "visolo_fast"]
        assert main(argv[3:]) == 0, command
    out = capsys.readouterr().out
    assert "done: 2 of 2 videos (5 frames)" in out and out.count("Average Precision") == 6
