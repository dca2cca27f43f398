"""What a user sees when a request is wrong or something breaks: one line, the right exit code.

Usage errors (a flag out of range, a device that does not exist, a checkpoint whose metadata
cannot describe a network) exit 2 with one ``error:`` line naming the flag or the file. An
unexpected error inside the library exits 1 with one line (the traceback with ``--debug``).
Ctrl-C during translation stops after the files in flight, says what was done, exits 130.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from imgfactory import write_png
from safetensors.torch import load_file, save_file

from img2img import cli
from img2img.checkpoint import meta_for, save_generator
from img2img.data.io import read_image
from img2img.inference import folder
from img2img.inference.translator import Translator
from img2img.nn import build_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH, KWARGS = "resnet_6blocks", {"ngf": 8}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator(ARCH, **KWARGS).eval()
    path = tmp_path_factory.mktemp("ckpt") / "G_A2B.safetensors"
    save_generator(path, net, meta_for(net, ARCH, KWARGS, "cyclegan", "A2B"))
    return path


def _call(capsys: pytest.CaptureFixture[str], main, *args: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.mark.parametrize("flag,value", [("--log-every", "0"), ("--save-every", "-1"),
                                        ("--crop-size", "0"), ("--steps", "0"),
                                        ("--ngf", "-8"), ("--workers", "-1")])
def test_train_flag_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, flag: str, value: str) -> None:
    code, _, err = _call(capsys, cli.train_main, "--data", tmp_path, "--out", tmp_path / "run",
                         flag, value)
    assert code == 2
    _one_error_line(err, flag)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("main", ["train", "translate"])
def test_unknown_device_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         checkpoint: Path, main: str) -> None:
    write_png(tmp_path / "in", "a.png", size=(16, 16))
    if main == "train":
        args = ["--data", tmp_path, "--out", tmp_path / "run", "--steps", "1"]
        fn = cli.train_main
    else:
        args = ["--checkpoint", checkpoint, "--input", tmp_path / "in", "--output",
                tmp_path / "out"]
        fn = cli.translate_main
    code, _, err = _call(capsys, fn, *args, "--device", "tpu")
    assert code == 2
    _one_error_line(err, "--device tpu")


def _with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        md = dict(f.metadata())
    md.update(changes)
    save_file(load_file(str(src)), str(dst), metadata=md)
    return dst


@pytest.mark.parametrize("changes,needle", [({"scale": "0"}, "scale=0"),
                                            ({"size_multiple": "0"}, "size_multiple=0"),
                                            ({"in_channels": "-3"}, "in_channels=-3"),
                                            ({"value_range": "[1, -1]"}, "value_range")])
def test_impossible_checkpoint_metadata(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        checkpoint: Path, changes: dict[str, str],
                                        needle: str) -> None:
    bad = _with_metadata(checkpoint, tmp_path / "bad.safetensors", **changes)
    write_png(tmp_path / "in", "a.png", size=(16, 16))
    code, _, err = _call(capsys, cli.translate_main, "--checkpoint", bad, "--input",
                         tmp_path / "in", "--output", tmp_path / "out")
    assert code == 2
    _one_error_line(err, str(bad), needle)
    assert not (tmp_path / "out").exists()


def test_channel_count_images_cannot_give(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          checkpoint: Path) -> None:
    torch.manual_seed(0)
    kwargs = {"ngf": 8, "in_channels": 5}
    net = build_generator(ARCH, **kwargs)
    five = tmp_path / "five.safetensors"
    save_generator(five, net, meta_for(net, ARCH, kwargs, "cyclegan"))
    write_png(tmp_path / "in", "a.png", size=(16, 16))
    code, _, err = _call(capsys, cli.translate_main, "--checkpoint", five, "--input",
                         tmp_path / "in", "--output", tmp_path / "out")
    assert code == 2
    _one_error_line(err, "5 input channels", "a.png")


def test_library_value_error_is_a_failure_not_usage(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, checkpoint: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_png(tmp_path / "in", "a.png", size=(16, 16))

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(folder, "plan", broken)
    args = ["--checkpoint", checkpoint, "--input", tmp_path / "in", "--output", tmp_path / "out"]
    code, _, err = _call(capsys, cli.translate_main, *args)
    assert code == 1, "a bug is not the user's mistake: exit 1, not 2"
    _one_error_line(err, "ValueError", "internal invariant broken", "--debug")
    code, _, err = _call(capsys, cli.translate_main, *args, "--debug")
    assert code == 1 and "Traceback" in err and "internal invariant broken" in err


def test_ctrl_c_during_translate_stops_cleanly(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, checkpoint: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        write_png(tmp_path / "in", f"{i}.png", size=(16, 16 + i))  # no two batch together
    calls = {"n": 0}
    real = Translator.translate_arrays

    def interrupted_on_third(self: Translator, images: list) -> list:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, images)

    monkeypatch.setattr(Translator, "translate_arrays", interrupted_on_third)
    args = ["--checkpoint", checkpoint, "--input", tmp_path / "in", "--output",
            tmp_path / "out", "--batch-size", "1", "--quiet"]
    code, _, err = _call(capsys, cli.translate_main, *args)
    assert code == 130
    assert "Traceback" not in err and "interrupted: 2 translated" in err, err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["0.png", "1.png"], "only complete outputs, no temp files"
    for name in written:
        assert read_image(tmp_path / "out" / name).shape == (16, 16 + int(name[0]), 3)
    monkeypatch.setattr(Translator, "translate_arrays", real)
    code, out, err = _call(capsys, cli.translate_main, *args)
    assert code == 0, err
    assert "3 translated, 2 skipped" in out
    assert json.dumps(sorted(p.name for p in (tmp_path / "out").iterdir())) == json.dumps(
        [f"{i}.png" for i in range(5)])


def test_library_value_error_in_training_is_a_failure(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from img2img.engine import trainer

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise ValueError("shape invariant broken")

    monkeypatch.setattr(trainer.Trainer, "__init__", broken)
    code, _, err = _call(capsys, cli.train_main, "--data", tmp_path, "--out", tmp_path / "run")
    assert code == 1
    _one_error_line(err, "ValueError", "shape invariant broken")
