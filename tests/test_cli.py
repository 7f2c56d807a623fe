"""``python -m visolo_fast``: the demo runs the whole engine on the sample; user mistakes exit cleanly."""

import pytest

from visolo_fast.cli import main


def test_demo_tracks_the_sample(capsys):
    assert main(["demo", "--frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out
    assert "frame 0:" in out and "frame 1:" in out
    assert "done: 2 frames" in out and "tracks" in out


def test_demo_refuses_zero_frames(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--frames", "0"])
    assert exc.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_demo_unusable_backend_is_a_clean_error(capsys):
    assert main(["demo", "--frames", "2", "--backend", "cuda"]) == 2
    assert "backend 'cuda' runs on CUDA tensors" in capsys.readouterr().err
