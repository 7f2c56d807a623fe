"""The README's usage examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def check_engine_example(out: str) -> None:
    tracks = re.search(r"torch.Size\(\[(\d+), 4, 360, 640\]\)", out)
    assert tracks and int(tracks[1]) >= 1, out  # the seeded network finds something
    streamed = [line.split()[0] for line in out.splitlines() if line[:1].isdigit()]
    assert streamed == ["0", "1", "2", "3"]  # the tracker's loop: one result per frame, in order


def check_many_streams_example(out: str) -> None:
    # each stream's frame t comes back from the call that ran it
    assert out.splitlines() == ["0 0", "1 0", "0 1", "1 1", "0 2", "1 2"]


def check_network_example(out: str) -> None:
    lines = out.splitlines()
    assert lines[0] == ("torch.Size([1, 40, 12, 21]) torch.Size([1, 256, 12, 21]) torch.Size([1, 256, 88, 156]) "
                        "torch.Size([1, 252, 128]) torch.Size([1, 252, 128])")
    assert lines[1] == "True"


# What the blocks print, checked where a block is recognised by a name it uses; every block runs.
CHECKS = {"segment_video": check_engine_example, "step_many": check_many_streams_example,
          "forward_frame": check_network_example}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_readme_python_block_runs(block, capsys, tmp_path, monkeypatch):
    """Every Python block of the README runs as written, on a CPU, from a fresh namespace."""
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    for name, check in CHECKS.items():
        if name in block:
            check(out)
            break


def test_readme_blocks_are_recognised():
    assert len(PYTHON_BLOCKS) >= 3
    for name in CHECKS:
        assert any(name in b for b in PYTHON_BLOCKS), f"no README block uses {name}"


def run_commands(marker: str, subcommands: list[str], folder, monkeypatch) -> None:
    """Runs, in ``folder``, the README's bash block that holds ``marker``: its commands, as written."""
    import shlex

    from visolo_fast.cli import main

    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = next(b for b in blocks if marker in b).strip().splitlines()
    assert [c.split()[3] for c in commands] == subcommands
    monkeypatch.chdir(folder)
    for command in commands:
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "visolo_fast"]
        assert main(argv[3:]) == 0, command


def test_readme_ytvis_commands_run(tmp_path, monkeypatch, capsys):
    """shapes -> ytvis -> evaluate, as written (random weights at the official input size)."""
    run_commands("visolo_fast shapes", ["shapes", "ytvis", "evaluate"], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "done: 2 of 2 videos (5 frames)" in out and out.count("Average Precision") == 6


def test_readme_package_commands_run(tmp_path, monkeypatch, capsys):
    """export -> demo --package, as written (random weights at the official input size)."""
    run_commands("visolo_fast export", ["export", "demo"], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "package: visolo.pt2 (cpu, float32, weights: random weights (demo))" in out
    assert "done: 4 frames" in out and (tmp_path / "visolo_demo" / "results.json").exists()


def test_readme_cpp_block_loads_the_ops_by_a_path():
    """dlopen looks a bare file name up in LD_LIBRARY_PATH and the system's folders, not the
    current folder: the C++ block names the ops library by its path in the build folder that
    the README's cmake command makes."""
    text = README.read_text()
    paths = [p for block in re.findall(r"```cpp\n(.*?)```", text, flags=re.S)
             for p in re.findall(r'load_ops\("([^"]*)"\)', block)]
    assert paths, "no README C++ block calls visolo::load_ops"
    for path in paths:
        folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
        assert folder and name == "libvisolo_fast_ops.so", path
        assert f"cmake -S . -B {folder} " in text, f"{path}: no README cmake command builds into {folder}"
