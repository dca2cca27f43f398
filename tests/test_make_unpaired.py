"""Tests for datasets/make_unpaired.py and img2img.data.build_unpaired (tiny images)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from imgfactory import (
    write_bmp,
    write_jpeg,
    write_png,
    write_text_file,
    write_truncated_jpeg,
)

from img2img.data import build_unpaired as bu
from img2img.data.io import ImageWriteError, read_image

SCRIPT = Path(__file__).resolve().parents[1] / "datasets" / "make_unpaired.py"
SIZE = (20, 24)  # H, W
SPLITS = ("trainA", "trainB", "testA", "testB")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_unpaired_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


main = _load_script().main


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below root (symlinks followed)."""
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture()
def messy(tmp_path: Path) -> dict[str, Path]:
    """Sources for A (two folders + a list file) and B (a folder + a glob), with problems."""
    src = tmp_path / "src"
    horses, more, zebras, zoo = src / "horses", src / "more_horses", src / "zebras", src / "zoo"
    h0 = write_jpeg(horses / "farm", "h0.jpg", size=SIZE, seed=1).path
    for i in range(1, 4):
        write_jpeg(horses / "farm", f"h{i}.jpg", size=SIZE, seed=1 + i)
    write_png(horses / "wild", "h4.png", size=SIZE, seed=5)
    write_jpeg(horses, "cat.jpg", size=SIZE, seed=6)
    write_jpeg(more, "cat.jpg", size=SIZE, seed=7)  # same name, other folder
    _copy(h0, horses / "farm" / "h0_copy.jpg")  # duplicate within A
    write_truncated_jpeg(horses, "broken.jpg")
    write_text_file(horses, "notes.jpg")
    write_png(horses, "tiny.png", size=(5, 6), seed=8)
    amb = write_png(horses, "ambiguous.png", size=SIZE, seed=9).path
    _copy(amb, zebras / "ambiguous_copy.png")  # in A and B
    write_png(src / "extra", "e0.png", size=SIZE, seed=10)
    listing = src / "lists" / "a.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("# extra horses\n\n../extra/e0.png\n../extra/missing.png\n")
    for i in range(3):
        write_png(zebras / "sub", f"z{i}.png", size=SIZE, seed=20 + i)
    write_bmp(zebras, "z3.bmp", size=SIZE, seed=23)
    write_jpeg(zoo, "zb0.jpg", size=SIZE, seed=30)
    write_jpeg(zoo, "zb1.jpg", size=SIZE, seed=31)
    write_png(zoo, "skip.png", size=SIZE, seed=32)  # not matched by the glob
    return {"src": src, "horses": horses, "more": more, "list": listing, "zebras": zebras,
            "glob": zoo / "*.jpg", "out": tmp_path / "out"}


def _args(m: dict[str, Path], out: Path | None = None, *extra: str) -> list[str]:
    return ["--a", str(m["horses"]), str(m["more"]), str(m["list"]),
            "--b", str(m["zebras"]), str(m["glob"]),
            "--out", str(out or m["out"]), "--min-size", "8", "--test-fraction", "0.25",
            "--workers", "2", "--quiet", *extra]


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_messy_tree_counts_manifest_and_untouched_sources(
    messy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(messy["src"])
    assert main(_args(messy)) == 0
    assert _tree(messy["src"]) == before
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary == ("A: 6 train / 2 test, B: 4 train / 2 test; "
                       "dropped 7 (corrupt 3, too small 1, duplicate 3)")

    out = messy["out"]
    man = _manifest(out)
    assert man["counts"] == {"trainA": 6, "trainB": 4, "testA": 2, "testB": 2, "dropped": 7,
                             "corrupt": 3, "too_small": 1, "duplicate": 3}
    assert man["sources"]["B"] == [str(messy["zebras"]), str(messy["glob"])]
    assert man["seed"] == 0 and man["test_fraction"] == 0.25

    src = messy["src"]
    dropped = {Path(d["path"]).relative_to(src).as_posix(): d for d in man["dropped"]}
    kinds = {k: d["kind"] for k, d in dropped.items()}
    assert kinds == {
        "horses/broken.jpg": "corrupt", "horses/notes.jpg": "corrupt",
        "extra/missing.png": "corrupt", "horses/tiny.png": "too_small",
        "horses/farm/h0_copy.jpg": "duplicate",
        "horses/ambiguous.png": "cross_domain_duplicate",
        "zebras/ambiguous_copy.png": "cross_domain_duplicate",
    }
    assert "truncated JPEG" in dropped["horses/broken.jpg"]["reason"]
    assert "not an image" in dropped["horses/notes.jpg"]["reason"]
    assert "not found" in dropped["extra/missing.png"]["reason"]
    assert "too small" in dropped["horses/tiny.png"]["reason"]
    assert dropped["horses/farm/h0_copy.jpg"]["duplicate_of"] == str(src / "horses/farm/h0.jpg")
    assert dropped["zebras/ambiguous_copy.png"]["duplicate_of"] == str(src / "horses/ambiguous.png")

    # Every written file is in the manifest, no output overwrote another, bytes are unchanged.
    written = _tree(out)
    del written["manifest.json"]
    assert len(written) == 14 == len(man["files"])
    assert all(f["method"] == "copy" for f in man["files"])
    for f in man["files"]:
        assert written[f["path"]] == _sha(Path(f["source"])) == f["source_sha256"]
    names = {d: {p.split("/")[1] for p in written if p.split("/")[0][-1] == d} for d in "AB"}
    assert {"cat.jpg", "cat_2.jpg", "e0.png", "h4.png"} <= names["A"]
    assert {"z0.png", "z3.bmp", "zb0.jpg"} <= names["B"]
    assert not any(p.startswith(".") for p in (x.name for x in out.iterdir()))


def test_deterministic_and_seed_dependent(messy: dict[str, Path], tmp_path: Path) -> None:
    assert main(_args(messy, tmp_path / "r1")) == 0
    assert main(_args(messy, tmp_path / "r2")) == 0
    assert _tree(tmp_path / "r1") == _tree(tmp_path / "r2")
    splits = set()
    for seed in range(1, 5):
        out = tmp_path / f"s{seed}"
        assert main(_args(messy, out, "--seed", str(seed))) == 0
        splits.add(tuple(sorted(p.name for p in (out / "testA").iterdir())))
    assert len(splits) > 1


def test_refuses_nonempty_root_then_overwrite_keeps_other_files(
    messy: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = messy["out"]
    (out / "trainA").mkdir(parents=True)
    (out / "trainA" / "stale.jpg").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    assert main(_args(messy)) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "trainA" / "stale.jpg").exists()

    assert main(_args(messy, None, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "trainA" / "stale.jpg").exists()
    assert sum(1 for _ in out.rglob("*.*")) == 14 + 2  # images + manifest + notes.txt
    assert main(_args(messy, None, "--overwrite", "--seed", "3")) == 0  # rerun replaces


def test_refuses_root_inside_source_or_over_a_source(
    messy: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = messy["horses"] / "dataset"
    assert main(_args(messy, inside)) == 2
    assert "inside the source folder" in capsys.readouterr().err
    assert not inside.exists()
    assert main(_args(messy, messy["horses"], "--overwrite")) == 2

    # A source living in ROOT/trainB would be deleted by --overwrite: refused.
    root = tmp_path / "ds"
    write_png(root / "trainB", "b.png", size=SIZE, seed=40)
    args = ["--a", str(messy["horses"]), "--b", str(root / "trainB"), "--out", str(root),
            "--overwrite", "--quiet"]
    assert main(args) == 2
    assert "would replace" in capsys.readouterr().err
    assert (root / "trainB" / "b.png").exists()


def test_refuses_root_whose_replaced_folders_link_outside(
    messy: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, elsewhere = messy["out"], tmp_path / "elsewhere"
    write_png(elsewhere, "mine.png", size=SIZE, seed=41)
    out.mkdir()
    (out / "trainA").symlink_to(elsewhere)  # --overwrite would replace it
    assert main(_args(messy, None, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert "destination resolves outside the output folder" in err and "trainA" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "trainA").is_symlink() and _tree(elsewhere) == {
        "mine.png": _sha(elsewhere / "mine.png")}
    assert sorted(p.name for p in out.iterdir()) == ["trainA"]


def test_usage_errors(messy: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o")
    assert main(["--a", str(tmp_path / "nope"), "--b", str(messy["zebras"]), "--out", out]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    write_text_file(bad, "x.jpg")
    assert main(["--a", str(messy["horses"]), "--b", str(bad), "--out", out, "--quiet"]) == 2
    assert "domain B has no usable images" in capsys.readouterr().err
    assert main(["--a", str(messy["horses"]), "--out", out]) == 2
    assert main(["--a", str(messy["horses"]), "--b", str(messy["zebras"]), "--out", out,
                 "--test-fraction", "1.5"]) == 2
    assert not Path(out).exists()


def test_resize_sizes_and_formats(messy: dict[str, Path]) -> None:
    assert main(_args(messy, None, "--resize", "16")) == 0
    man = _manifest(messy["out"])
    assert man["options"]["resize"] == 16 and len(man["files"]) == 14
    for f in man["files"]:
        out = messy["out"] / f["path"]
        img = read_image(out)
        assert min(img.shape[:2]) == 16 and img.shape[:2] == (16, 19)
        assert out.suffix == (".jpg" if f["source"].endswith(".jpg") else ".png")
    assert man["methods"] == {"resized": 14}


def test_link_mode(messy: dict[str, Path]) -> None:
    before = _tree(messy["src"])
    assert main(_args(messy, None, "--mode", "link")) == 0
    man = _manifest(messy["out"])
    for f in man["files"]:
        out = messy["out"] / f["path"]
        assert out.is_symlink() or out.stat().st_nlink > 1
        assert _sha(out) == f["source_sha256"]
    assert sum(man["methods"].values()) == 14
    assert set(man["methods"]) <= {"hardlink", "symlink", "copy"}
    assert _tree(messy["src"]) == before


def test_labels_csv(messy: dict[str, Path], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    src = messy["src"]
    rows = ["file,species"]
    rows += [f"horses/farm/h{i}.jpg,horse" for i in range(4)]
    rows += [f"{src / 'zebras/sub'}/z{i}.png,zebra" for i in range(3)]  # absolute paths
    rows += ["zoo/zb0.jpg, cat ", "horses/broken.jpg,horse"]
    csv = src / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "lab"
    base = ["--labels", str(csv), "--path-column", "file", "--label-column", "species",
            "--a-value", "horse", "--b-value", "zebra", "--out", str(out), "--quiet"]
    assert main(base) == 0
    man = _manifest(out)
    c = man["counts"]
    assert (c["trainA"] + c["testA"], c["trainB"] + c["testB"], c["corrupt"]) == (4, 3, 1)
    assert c["testA"] == 1 and c["testB"] == 1  # >= 1 test image per domain
    assert man["sources"]["label_column"] == "species"

    bad = ["filename" if a == "file" else a for a in base]
    assert main([*bad, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "'filename'" in err and "'file', 'species'" in err


def test_write_failure_leaves_root_unchanged(
    messy: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(_args(messy)) == 0
    before = _tree(messy["out"])

    def fail(path: Path, *_: object, **__: object) -> None:
        raise ImageWriteError(path, "disk full")

    monkeypatch.setattr(bu, "write_image", fail)
    assert main(_args(messy, None, "--overwrite", "--resize", "16")) == 1
    assert _tree(messy["out"]) == before
    assert not any(p.name.startswith(".") for p in messy["out"].iterdir())


def test_resize_short_side_enlarges_and_keeps_channels() -> None:
    assert bu.resize_short_side(np.zeros((5, 6, 1), np.uint16), 10).shape == (10, 12, 1)
    assert bu.resize_short_side(np.zeros((40, 30, 4), np.uint8), 15).shape == (20, 15, 4)


def test_unique_names_case_insensitive_and_stable() -> None:
    assert bu.unique_names(["cat.jpg", "Cat.jpg", "cat_2.jpg", "dog.png", "cat.jpg"]) == [
        "cat.jpg", "Cat_3.jpg", "cat_2.jpg", "dog.png", "cat_4.jpg"]
