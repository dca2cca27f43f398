"""One command line: ``img2img <command>`` lists, dispatches and documents every subcommand,
the scripts in ``tools/`` and ``datasets/`` give the same results, and ``img2img data split``
splits folders into train/val/test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from imgfactory import photo_like, write_jpeg, write_png

from img2img import cli, extras
from img2img.commands import COMMANDS
from img2img.commands.data import DATA_COMMANDS
from img2img.commands.table import Command, dispatch, module_command
from img2img.data import split as split_module
from img2img.data.io import write_image

ROOT = Path(__file__).resolve().parents[1]

# The flags each command's --help must show: the design notes' shared names where they apply.
FLAGS = {
    "train": ["--task", "--data", "--out", "--device", "--precision", "--batch-size",
              "--workers", "--seed", "--quiet", "--max-image-pixels", "--debug"],
    "translate": ["--checkpoint", "--input", "--output", "--device", "--precision",
                  "--batch-size", "--quiet", "--max-image-pixels", "--debug"],
    "evaluate": ["--pred", "--ref", "--fid", "--kid", "--device", "--batch-size", "--seed",
                 "--quiet", "--max-image-pixels", "--debug"],
    "benchmark": ["--only", "--tasks", "--device", "--precision", "--batch-size", "--json",
                  "--debug"],
    "import": ["--out", "--task", "--direction", "--key", "--quiet", "--debug"],
    "export": ["--onnx", "--opset", "--fp16", "--key", "--quiet", "--debug"],
    "models": ["fetch", "--json"],
    "report": ["run_dir", "--debug"],
    "app": ["--checkpoint", "--host", "--port", "--share", "--device", "--precision", "--tile",
            "--debug"],
    "data": list(DATA_COMMANDS),
}
DATA_FLAGS = {
    "make-unpaired": ["--a", "--b", "--labels", "--out", "--test-fraction", "--seed", "--mode",
                      "--workers", "--quiet", "--max-image-pixels", "--debug"],
    "make-paired": ["--photos", "--op", "--out", "--test-fraction", "--seed", "--layout",
                    "--quiet", "--max-image-pixels", "--debug"],
    "combine": ["--a", "--b", "--out", "--split", "--input", "--quiet", "--max-image-pixels",
                "--debug"],
    "split": ["--input", "--a", "--b", "--out", "--layout", "--val-fraction", "--test-fraction",
              "--seed", "--mode", "--overwrite", "--workers", "--quiet", "--debug"],
    "make-sr-pairs": ["--hr", "--scale", "--out", "--quiet", "--max-image-pixels", "--debug"],
    "download": ["--list", "--out", "--url-base", "--sha256", "--quiet", "--debug"],
}


def _main(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's --help and errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _script(path: str, *args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the script finds ROOT
    return subprocess.run([sys.executable, str(ROOT / path), *(str(a) for a in args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


# --------------------------------------------------------------------------- the listing


@pytest.mark.parametrize("args", [["--help"], ["-h"], []])
def test_help_lists_every_command_with_its_summary_on_stdout(
        capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = _main(capsys, *args)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("usage: img2img <command>")
    for name, command in COMMANDS.items():
        assert any(line.split(None, 1) == [name, command.summary] for line in lines), name
    for name in ("train", "translate", "evaluate", "data", "benchmark", "import", "export",
                 "models", "report"):
        assert name in COMMANDS


def test_data_help_lists_the_dataset_tools(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _main(capsys, "data", "--help")
    assert code == 0 and err == ""
    assert list(DATA_COMMANDS) == ["make-unpaired", "make-paired", "combine", "split",
                                   "make-sr-pairs", "download"]
    for name, command in DATA_COMMANDS.items():
        assert f"  {name}" in out and command.summary in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from img2img import __version__

    try:
        expected = version("img2img")
    except PackageNotFoundError:
        expected = __version__
    code, out, err = _main(capsys, "--version")
    assert code == 0 and out == f"img2img {expected}\n" and err == ""
    done = subprocess.run([sys.executable, "-m", "img2img", "--version"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout == out  # python -m img2img: the same entry


@pytest.mark.parametrize("args,named,closest", [(["trian"], "trian", "train"),
                                                (["exprot", "x"], "exprot", "export"),
                                                (["data", "splitt"], "splitt", "split")])
def test_unknown_command_is_one_line_with_the_closest(
        capsys: pytest.CaptureFixture[str], args: list[str], named: str, closest: str) -> None:
    code, out, err = _main(capsys, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"'{named}'" in lines[0] and f"'{closest}'" in lines[0]


@pytest.mark.parametrize("name", list(FLAGS))
def test_every_command_help_exits_0_and_lists_its_flags(
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = _main(capsys, name, "--help")
    assert code == 0, err
    for flag in FLAGS[name]:
        assert flag in out, (name, flag)


def test_every_command_is_checked() -> None:
    assert set(FLAGS) == set(COMMANDS) and set(DATA_FLAGS) == set(DATA_COMMANDS)


@pytest.mark.parametrize("name", list(DATA_FLAGS))
def test_every_data_command_help_exits_0_and_lists_its_flags(
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = _main(capsys, "data", name, "--help")
    assert code == 0, err
    assert out.startswith(f"usage: img2img data {name}")
    for flag in DATA_FLAGS[name]:
        assert flag in out, (name, flag)


def test_models_fetch_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _main(capsys, "models", "fetch", "--help")
    assert code == 0
    for flag in ("--out", "--url", "--force", "--quiet", "--debug"):
        assert flag in out


def test_fid_modes_listed_without_torch_match_the_metrics() -> None:
    from img2img.commands.evaluate import FID_MODES
    from img2img.metrics.features import MODES

    assert tuple(FID_MODES) == tuple(MODES)


# --------------------------------------------------------------------------- the table


def _fake_app(monkeypatch: pytest.MonkeyPatch, seen: dict) -> None:
    mod = types.ModuleType("fake_img2img_app")

    def add_arguments(parser) -> None:  # noqa: ANN001
        parser.add_argument("--port", type=int, default=7860)

    def run(ns) -> int:  # noqa: ANN001
        seen["port"] = ns.port
        if ns.port == 1:
            raise extras.MissingExtraError(extras.missing_message("img2img app", "app"))
        if ns.port == 2:
            raise RuntimeError("server broke")
        return 0

    mod.add_arguments, mod.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "fake_img2img_app", mod)


def test_a_module_with_add_arguments_and_run_plugs_in_as_one_row(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """How ``app`` (img2img/webapp.py) joins the table: one line."""
    seen: dict = {}
    _fake_app(monkeypatch, seen)
    table = {**COMMANDS, "app": Command("a local web page", module_command(
        "fake_img2img_app", "img2img app", "The local web page.", extra="app"))}
    assert dispatch("img2img", table, ["app", "--port", "9000"], "") == 0
    assert seen["port"] == 9000
    assert dispatch("img2img", table, ["app", "--port", "1"], "") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: img2img app needs the optional extra 'app' (gradio is not "
                   "installed): pip install 'img2img[app]'"]
    assert dispatch("img2img", table, ["app", "--port", "2"], "") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: server broke" in err[0] and "--debug" in err[0]
    with pytest.raises(SystemExit) as exc:
        dispatch("img2img", table, ["app", "--help"], "")
    assert exc.value.code == 0 and "--port" in capsys.readouterr().out


def test_a_command_whose_module_needs_a_missing_extra_says_which(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    (tmp_path / "fake_gradio_app.py").write_text("import gradio\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    entry = module_command("fake_gradio_app", "img2img app", "", extra="app")
    assert entry([]) == 2
    assert capsys.readouterr().err == ("error: img2img app needs the optional extra 'app' "
                                       "(gradio is not installed): pip install "
                                       "'img2img[app]'\n")


def test_require_names_the_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(extras.MissingExtraError) as exc:
        extras.require("rasterio", "geo", "GeoTIFF support")
    assert str(exc.value) == ("GeoTIFF support needs the optional extra 'geo' (rasterio is not "
                              "installed): pip install 'img2img[geo]'")
    assert extras.optional("rasterio") is None and not extras.available("rasterio")


def test_tensorboard_without_its_extra_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from img2img.engine.logs import LossLog
    from img2img.errors import UsageError

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(UsageError, match=r"--tensorboard needs the optional extra 'tb'.*"
                                         r"pip install 'img2img\[tb\]'"):
        LossLog(tmp_path, tensorboard=True)


# --------------------------------------------------------------------------- both ways


def test_make_unpaired_command_and_script_write_the_same_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(5):
        write_jpeg(tmp_path / "horses", f"h{i}.jpg", size=(20, 24), seed=i)
        write_png(tmp_path / "zebras" / "sub", f"z{i}.png", size=(20, 24), seed=10 + i)
    args = ["--a", tmp_path / "horses", "--b", tmp_path / "zebras", "--test-fraction", "0.4",
            "--seed", "3", "--quiet"]
    code, out, err = _main(capsys, "data", "make-unpaired", *args, "--out", tmp_path / "cmd")
    assert code == 0, err
    done = _script("datasets/make_unpaired.py", *args, "--out", tmp_path / "script")
    assert done.returncode == 0, done.stderr
    assert done.stdout == out
    tree = _tree(tmp_path / "cmd")
    assert tree == _tree(tmp_path / "script")
    assert sum(name.startswith("testA/") for name in tree) == 2


def test_combine_command_and_script_write_the_same_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        write_png(tmp_path / "A", f"x{i}.png", size=(16, 16), seed=i)
        write_jpeg(tmp_path / "B", f"x{i}.jpg", size=(16, 16), seed=20 + i)
    write_png(tmp_path / "A", "lonely.png", size=(16, 16), seed=9)
    args = ["--a", tmp_path / "A", "--b", tmp_path / "B", "--quiet"]
    code, out, err = _main(capsys, "data", "combine", *args, "--out", tmp_path / "cmd")
    assert code == 0 and "lonely.png" in err
    done = _script("datasets/combine_pairs.py", *args, "--out", tmp_path / "script")
    assert done.returncode == 0 and done.stdout == out
    tree = _tree(tmp_path / "cmd")
    assert sorted(tree) == ["x0.png", "x1.png", "x2.png"] and tree == _tree(tmp_path / "script")


def test_evaluate_command_prints_what_the_script_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = photo_like(20, 24, seed=10)
    write_image(tmp_path / "ref" / "a.png", a)
    write_image(tmp_path / "pred" / "a.png", np.clip(a.astype(int) + 7, 0, 255).astype(np.uint8))
    write_image(tmp_path / "ref" / "b.png", photo_like(20, 24, seed=11))
    write_image(tmp_path / "pred" / "b.png", photo_like(20, 24, seed=12))
    args = ["--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--y-channel"]
    code, out, err = _main(capsys, "evaluate", *args)
    assert code == 0, err
    done = _script("tools/evaluate.py", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == out
    assert "mean (2 images)" in out and "2 images evaluated, 0 problems" in out
    assert _main(capsys, "evaluate", "--pred", tmp_path / "pred")[0] == 2  # no --ref


# --------------------------------------------------------------------------- data split


def _photos(folder: Path, n: int, sub: str = "", ext: str = "png") -> list[str]:
    names = []
    for i in range(n):
        rel = f"{sub}/p{i:02d}.{ext}" if sub else f"p{i:02d}.{ext}"
        write_image(folder / rel, photo_like(8, 8, seed=i))
        names.append(rel)
    return names


def _split(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    return _main(capsys, "data", "split", *args, "--quiet")


def test_split_one_folder_by_fractions(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    names = _photos(tmp_path / "in", 12, sub="x") + _photos(tmp_path / "in", 8)
    before = _tree(tmp_path / "in")
    code, out, err = _split(capsys, "--input", tmp_path / "in", "--out", tmp_path / "out",
                            "--val-fraction", "0.1", "--test-fraction", "0.2")
    assert code == 0, err
    tree = _tree(tmp_path / "out")
    by_split = {s: sorted(k.split("/", 1)[1] for k in tree if k.startswith(f"{s}/"))
                for s in ("train", "val", "test")}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert sorted(sum(by_split.values(), [])) == sorted(names)  # every file once, tree kept
    for split, rels in by_split.items():
        for rel in rels:
            assert tree[f"{split}/{rel}"] == before[rel]  # the bytes, unchanged
    assert "train 14, val 2, test 4" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 14, "val": 2, "test": 4}
    assert len(manifest["files"]) == 20 and manifest["methods"] == {"copy": 20}
    assert _tree(tmp_path / "in") == before


def test_split_is_deterministic_and_follows_the_seed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "in", 20)
    trees = {}
    for out, seed in (("s0", "0"), ("s0_again", "0"), ("s5", "5")):
        assert _split(capsys, "--input", tmp_path / "in", "--out", tmp_path / out,
                      "--seed", seed)[0] == 0
        trees[out] = {k: v for k, v in _tree(tmp_path / out).items() if k != "manifest.json"}
    assert trees["s0"] == trees["s0_again"]
    assert trees["s0"] != trees["s5"] and len(trees["s0"]) == len(trees["s5"]) == 20


def test_split_pairs_stay_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stems = [f"p{i:02d}" for i in range(10)]
    _photos(tmp_path / "A", 10, sub="d")
    _photos(tmp_path / "B", 10, sub="d", ext="jpg")
    write_image(tmp_path / "A" / "only_a.png", photo_like(8, 8, seed=99))
    code, out, err = _split(capsys, "--a", tmp_path / "A", "--b", tmp_path / "B", "--out",
                            tmp_path / "out", "--val-fraction", "0.2", "--test-fraction", "0.2")
    assert code == 0, err
    assert "only_a.png" in err and "unmatched" in err
    tree = _tree(tmp_path / "out")
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        a = sorted(k.split("/", 1)[1].rsplit(".", 1)[0] for k in tree if k.startswith(f"{split}A/"))
        b = sorted(k.split("/", 1)[1].rsplit(".", 1)[0] for k in tree if k.startswith(f"{split}B/"))
        assert a == b and len(a) == count, split  # the same pairs on both sides
        assert all(k.endswith(".jpg") for k in tree if k.startswith(f"{split}B/"))
    assert sorted(k.rsplit("/", 1)[1][:3] for k in tree if "A/" in k) == stems


def test_split_unpaired_layout_splits_each_domain(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "horses", 10)
    _photos(tmp_path / "zebras", 5, ext="jpg")
    code, _, err = _split(capsys, "--a", tmp_path / "horses", "--b", tmp_path / "zebras",
                          "--layout", "unpaired", "--val-fraction", "0", "--test-fraction",
                          "0.2", "--out", tmp_path / "out")
    assert code == 0, err
    folders = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert folders == ["manifest.json", "testA", "testB", "trainA", "trainB"]
    counts = {f: len(list((tmp_path / "out" / f).iterdir())) for f in folders[1:]}
    assert counts == {"testA": 2, "testB": 1, "trainA": 8, "trainB": 4}


def test_split_link_mode_links_or_copies(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "in", 4)
    assert _split(capsys, "--input", tmp_path / "in", "--out", tmp_path / "out", "--mode",
                  "link")[0] == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sum(manifest["methods"].values()) == 4
    for entry in manifest["files"]:
        dst = tmp_path / "out" / entry["path"]
        if entry["method"] == "hardlink":
            assert os.path.samefile(dst, entry["source"])
        assert dst.read_bytes() == Path(entry["source"]).read_bytes()


def test_split_refuses_an_output_inside_its_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "in", 4)
    before = _tree(tmp_path / "in")
    code, _, err = _split(capsys, "--input", tmp_path / "in", "--out", tmp_path / "in" / "s")
    assert code == 2 and "input folder" in err and len(err.strip().splitlines()) == 1
    assert _tree(tmp_path / "in") == before and not (tmp_path / "in" / "s").exists()
    # nor a ROOT whose replaced folder holds the input
    _photos(tmp_path / "root" / "train", 3)
    code, _, err = _split(capsys, "--input", tmp_path / "root" / "train", "--out",
                          tmp_path / "root", "--overwrite")
    assert code == 2 and "would replace" in err


def test_split_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    cases = [
        (["--input", tmp_path / "nope"], "not found"),
        (["--input", tmp_path / "in", "--a", tmp_path / "in"], "not both"),
        (["--a", tmp_path / "in"], "--b"),
        (["--input", tmp_path / "in", "--layout", "aligned"], "--layout aligned"),
        (["--input", tmp_path / "in", "--val-fraction", "0.5", "--test-fraction", "0.5"],
         "below 1"),
        (["--input", tmp_path / "in", "--test-fraction", "-0.1"], "--test-fraction"),
    ]
    for args, needle in cases:
        code, _, err = _split(capsys, *args, "--out", out)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert _split(capsys, "--input", tmp_path / "empty", "--out", out)[0] == 2


def test_split_into_a_used_root_needs_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "in", 6)
    out = tmp_path / "out"
    (out / "val").mkdir(parents=True)
    (out / "val" / "old.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    code, _, err = _split(capsys, "--input", tmp_path / "in", "--out", out)
    assert code == 2 and "--overwrite" in err
    assert (out / "val" / "old.png").exists()
    assert _split(capsys, "--input", tmp_path / "in", "--out", out, "--val-fraction", "0",
                  "--overwrite")[0] == 0
    assert not (out / "val").exists(), "the earlier run's val folder is replaced"
    assert (out / "notes.txt").read_text() == "mine", "other entries are left alone"


def test_split_ambiguous_stems_fail_the_rest_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _photos(tmp_path / "A", 4)
    _photos(tmp_path / "B", 4)
    write_image(tmp_path / "A" / "p00.jpg", photo_like(8, 8, seed=50))  # next to p00.png
    code, out, err = _split(capsys, "--a", tmp_path / "A", "--b", tmp_path / "B", "--out",
                            tmp_path / "out")
    assert code == 1 and "ambiguous" in err and "p00.jpg" in err
    assert "train 1, val 1, test 1 (pairs)" in out and "1 in B; 2 failed" in out
    names = {k.rsplit("/", 1)[1] for k in _tree(tmp_path / "out") if "A/" in k}
    assert names == {"p01.png", "p02.png", "p03.png"}


def test_split_write_failure_leaves_root_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _photos(tmp_path / "in", 6)
    out = tmp_path / "out"
    calls = {"n": 0}
    real = split_module._place

    def failing(src: Path, dst: Path, mode: str) -> str:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device")
        return real(src, dst, mode)

    monkeypatch.setattr(split_module, "_place", failing)
    code, _, err = _split(capsys, "--input", tmp_path / "in", "--out", out, "--workers", "1")
    assert code == 1 and "No space left on device" in err and "left as it was" in err
    assert not out.exists()


def test_translate_flags_are_the_folder_options_with_their_defaults() -> None:
    """Every translate flag that configures the run is a FolderOptions field of the same
    name and default (the Python API and the command line cannot drift apart)."""
    from dataclasses import fields

    from img2img.commands.translate import translate_parser
    from img2img.inference.run import FolderOptions

    ns = translate_parser().parse_args(["--checkpoint", "c", "--input", "i", "--output", "o"])
    options = {f.name: f.default for f in fields(FolderOptions)}
    assert set(options) - set(vars(ns)) == {"workers"}  # the API's reader threads
    given = {"checkpoint": "c", "input": "i", "output": "o"}
    assert {k: getattr(ns, k) for k in options if k != "workers"} == \
        {k: given.get(k, v) for k, v in options.items() if k != "workers"}
