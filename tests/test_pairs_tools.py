"""Tests for A|B pair tools: img2img.data.pairs, paired_ops and their dataset scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from imgfactory import (
    photo_like,
    write_corrupt_png,
    write_gray_png,
    write_jpeg,
    write_png,
    write_rgb16_png,
    write_rgba_png,
)

from img2img.data.io import read_image, write_image
from img2img.data.paired_ops import edges, split_test
from img2img.data.pairs import join_pair, match_format, split_pair

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_ds_{name}", ROOT / "datasets" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


combine_pairs = _script("combine_pairs")
make_paired = _script("make_paired")
make_sr_pairs = _script("make_sr_pairs")
OUTSIDE = "destination resolves outside the output folder"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- arrays


def test_split_pair_halves_and_odd_width() -> None:
    img = photo_like(6, 10, seed=1)
    a, b = split_pair(img)
    assert np.array_equal(a, img[:, :5]) and np.array_equal(b, img[:, 5:])
    assert a.flags.c_contiguous and b.flags.c_contiguous
    with pytest.raises(ValueError, match="odd width 9"):
        split_pair(img[:, :9])


def test_match_format_picks_richer_format() -> None:
    g8 = photo_like(4, 5, seed=2, channels=1)
    rgba16 = photo_like(4, 5, seed=3, channels=4, dtype=np.uint16)
    a, b = match_format(g8, rgba16)
    assert a.shape == b.shape == (4, 5, 4) and a.dtype == b.dtype == np.uint16
    assert np.array_equal(a[..., 0], g8[..., 0].astype(np.uint16) * 257)
    assert np.array_equal(a[..., 0], a[..., 2]) and (a[..., 3] == 65535).all()
    assert np.array_equal(b, rgba16)


def test_join_pair_height_rule() -> None:
    a, b = photo_like(8, 6, seed=4), photo_like(16, 10, seed=5)
    with pytest.raises(ValueError, match="A is 6x8, B is 10x16"):
        join_pair(a, b)
    assert join_pair(a, b, resize_b=True).shape == (8, 6 + 5, 3)


# --------------------------------------------------------------------------- combine / split


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    write_png(a, "x.png", size=(12, 10), seed=1)
    write_png(b, "x.png", size=(12, 10), seed=2)
    write_rgb16_png(a / "sub", "deep.png", size=(9, 8), seed=3)
    write_rgb16_png(b / "sub", "deep.png", size=(9, 8), seed=4)
    write_gray_png(a, "g.png", size=(7, 4))
    write_rgba_png(b, "g.png", size=(7, 4))
    return a, b


def test_combine_split_round_trip_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _two_folders(tmp_path)
    before = {p: p.read_bytes() for p in (a / "x.png", b / "x.png")}
    assert combine_pairs.main(["--a", str(a), "--b", str(b), "--out", str(tmp_path / "ab"),
                               "--quiet"]) == 0
    assert "3 pairs written, 0 failed" in capsys.readouterr().out
    assert _files(tmp_path / "ab") == ["g.png", "sub/deep.png", "x.png"]
    joined = read_image(tmp_path / "ab/x.png")
    assert joined.shape == (12, 20, 3)
    assert read_image(tmp_path / "ab/g.png").shape == (7, 8, 4)  # gray A -> RGBA like B
    assert combine_pairs.main(["--split", "--input", str(tmp_path / "ab"), "--out",
                               str(tmp_path / "s"), "--quiet"]) == 0
    for rel in ("x.png", "sub/deep.png"):
        for side, src in (("A", a), ("B", b)):
            out = read_image(tmp_path / "s" / side / rel)
            orig = read_image(src / rel)
            assert out.dtype == orig.dtype and np.array_equal(out, orig), (side, rel)
    assert all(p.read_bytes() == data for p, data in before.items())  # inputs untouched
    assert not list(tmp_path.rglob("*.tmp"))


def test_unmatched_files_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_jpeg(a, "x.jpg", size=(8, 8))
    write_png(b, "x.png", size=(8, 8))  # matches by stem
    write_png(a, "lonely_a.png", size=(8, 8))
    write_png(b / "d", "lonely_b.png", size=(8, 8))
    assert combine_pairs.main(["--a", str(a), "--b", str(b), "--out", str(tmp_path / "o"),
                               "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "lonely_a.png" in cap.err and "d/lonely_b.png" in cap.err
    assert "unmatched: 1 in A, 1 in B" in cap.out
    assert _files(tmp_path / "o") == ["x.png"]
    # nothing matches at all -> usage error
    assert combine_pairs.main(["--a", str(a), "--b",
                               str(b / "d"), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "no file in --a" in capsys.readouterr().err


def test_height_mismatch_fails_unless_resize_b(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_png(a, "x.png", size=(10, 6))
    write_png(b, "x.png", size=(20, 30))
    write_png(a, "ok.png", size=(10, 6))
    write_png(b, "ok.png", size=(10, 6))
    args = ["--a", str(a), "--b", str(b), "--quiet"]
    assert combine_pairs.main([*args, "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "x.png" in err and "A is 6x10, B is 30x20" in err
    assert _files(tmp_path / "o1") == ["ok.png"]
    assert combine_pairs.main([*args, "--out", str(tmp_path / "o2"), "--resize-b"]) == 0
    assert read_image(tmp_path / "o2/x.png").shape == (10, 6 + 15, 3)
    assert "unequal widths" in capsys.readouterr().err  # A|B halves cannot be split again


def test_split_odd_width_named_and_out_inside_input(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "ab"
    write_png(src, "odd.png", size=(4, 7))
    write_png(src, "even.png", size=(4, 8))
    assert combine_pairs.main(["--split", "--input", str(src), "--out", str(tmp_path / "s"),
                               "--quiet"]) == 1
    assert "odd.png: odd width 7" in capsys.readouterr().err
    assert _files(tmp_path / "s") == ["A/even.png", "B/even.png"]
    assert combine_pairs.main(["--split", "--input", str(src), "--out", str(src / "out"),
                               "--quiet"]) == 2
    assert "refusing" in capsys.readouterr().err and not (src / "out").exists()
    assert combine_pairs.main(["--a", str(src)]) == 2  # argparse usage error


@pytest.mark.parametrize("into_input", [False, True])
def test_combine_refuses_destinations_that_a_link_leads_out(
        tmp_path: Path, capsys: pytest.CaptureFixture, into_input: bool) -> None:
    a, b = _two_folders(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = a / "sub" if into_input else elsewhere
    before = _files(target)
    out = tmp_path / "ab"
    out.mkdir()
    (out / "sub").symlink_to(target)
    assert combine_pairs.main(["--a", str(a), "--b", str(b), "--out", str(out), "--quiet"]) == 1
    cap = capsys.readouterr()
    assert f"failed: {a / 'sub/deep.png'}: {OUTSIDE}: {out / 'sub/deep.png'}" in cap.err
    assert "2 pairs written, 1 failed" in cap.out
    assert _files(target) == before
    assert _files(out) == ["g.png", "x.png"]

    if into_input:
        return
    # Splitting: both halves are checked before either is written.
    split = tmp_path / "split"
    split.mkdir()
    (split / "B").symlink_to(elsewhere)
    assert combine_pairs.main(["--split", "--input", str(out), "--out", str(split),
                               "--quiet"]) == 1
    cap = capsys.readouterr()
    assert cap.err.count(OUTSIDE) == 2 and "0 files written, 2 failed" in cap.out
    assert _files(elsewhere) == [] and not (split / "A").exists()


def test_make_sr_pairs_refuses_destinations_that_a_link_leads_out(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, out, elsewhere = tmp_path / "hr", tmp_path / "x2", tmp_path / "elsewhere"
    write_png(src, "a.png", size=(8, 8))
    write_png(src / "sub", "b.png", size=(8, 8))
    elsewhere.mkdir()
    (out / "LR_x2").mkdir(parents=True)
    (out / "LR_x2" / "sub").symlink_to(elsewhere)
    assert make_sr_pairs.main(["--hr", str(src), "--scale", "2", "--out", str(out),
                               "--quiet"]) == 1
    cap = capsys.readouterr()
    assert f"failed: {src.resolve() / 'sub/b.png'}: {OUTSIDE}" in cap.err
    assert "1 pairs written, 1 failed" in cap.out
    assert _files(elsewhere) == [] and not (out / "HR" / "sub").exists()
    assert _files(out / "HR") == ["a.png"]


# --------------------------------------------------------------------------- make_paired


def _photos(folder: Path, n: int = 6, size: tuple[int, int] = (24, 32)) -> None:
    for i in range(n):
        write_png(folder, f"p{i:02d}.png", size=size, seed=i)


def test_edges_black_lines_on_white() -> None:
    img = np.full((32, 32, 3), 90, np.uint8)
    img[8:24, 8:24] = 230  # a sharp square
    out = edges(img)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    black = (out == 0).all(axis=2)
    assert 0.02 < black.mean() < 0.3 and ((out == 0) | (out == 255)).all()
    assert black[8, 8:24].any() or black[7, 8:24].any()  # the square's top edge
    deep = edges(img.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16 and np.array_equal(deep == 0, out == 0)


@pytest.mark.parametrize("op", ["edges", "gray", "blur", "downscale"])
def test_make_paired_aligned(tmp_path: Path, op: str) -> None:
    photos, root = tmp_path / "photos", tmp_path / "ds"
    _photos(photos, n=4)
    img = np.full((24, 32, 3), 60, np.uint8)
    img[6:18, 8:24] = 220
    write_image(photos / "shape.png", img)
    assert make_paired.main(["--photos", str(photos), "--op", op, "--out", str(root),
                             "--test-fraction", "0.4", "--quiet"]) == 0
    for phase in ("train", "test"):
        names_a = _files(root / f"{phase}A")
        assert names_a and names_a == _files(root / f"{phase}B")
    files = {p.name: p for p in root.rglob("*.png")}
    assert len(files) == 5
    phase = "trainA" if (root / "trainA/shape.png").exists() else "testA"
    a = read_image(root / phase / "shape.png")
    b = read_image(root / phase.replace("A", "B") / "shape.png")
    assert a.shape == b.shape == (24, 32, 3) and np.array_equal(b, img)
    if op == "edges":
        black = (a == 0).all(axis=2)
        assert 0.01 < black.mean() < 0.3 and ((a == 0) | (a == 255)).all()
    elif op == "gray":
        assert np.array_equal(a[..., 0], a[..., 1]) and a[0, 0, 0] == 60
    else:  # blur and downscale soften the square's border but keep flat areas
        assert not np.array_equal(a, img) and a[0, 0, 0] == 60


def test_make_paired_combined_size_and_16bit(tmp_path: Path) -> None:
    photos, root = tmp_path / "photos", tmp_path / "ds"
    write_rgb16_png(photos, "deep.png", size=(16, 20))
    write_png(photos, "x.png", size=(20, 30))
    assert make_paired.main(["--photos", str(photos), "--op", "blur", "--sigma", "1",
                             "--out", str(root), "--layout", "combined", "--size", "10",
                             "--test-fraction", "0", "--quiet"]) == 0
    assert _files(root) == ["train/deep.png", "train/x.png"]
    deep, x = read_image(root / "train/deep.png"), read_image(root / "train/x.png")
    assert deep.shape == (10, 2 * 12, 3) and deep.dtype == np.uint16
    assert x.shape == (10, 2 * 15, 3)


def test_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    rels = [f"p{i:02d}.png" for i in range(20)]
    first = split_test(rels, 0.25, seed=1)
    assert len(first) == 5 and first == split_test(list(reversed(rels)), 0.25, seed=1)
    assert first != split_test(rels, 0.25, seed=2)
    photos = tmp_path / "photos"
    _photos(photos, n=6, size=(8, 8))
    runs = []
    for k in range(2):
        root = tmp_path / f"ds{k}"
        assert make_paired.main(["--photos", str(photos), "--op", "gray", "--out", str(root),
                                 "--test-fraction", "0.5", "--seed", "7", "--quiet"]) == 0
        runs.append(_files(root / "testA"))
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_make_paired_corrupt_photo_reported(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    photos, root = tmp_path / "photos", tmp_path / "ds"
    _photos(photos, n=3, size=(8, 8))
    write_corrupt_png(photos, "broken.png")
    assert make_paired.main(["--photos", str(photos), "--op", "downscale", "--out", str(root),
                             "--test-fraction", "0", "--quiet"]) == 1
    cap = capsys.readouterr()
    assert "broken.png" in cap.err and "corrupt" in cap.err
    assert "3 pairs written" in cap.out and "1 failed" in cap.out
    assert _files(root / "trainA") == ["p00.png", "p01.png", "p02.png"]
    assert make_paired.main(["--photos", str(photos), "--op", "gray",
                             "--out", str(photos / "ds"), "--quiet"]) == 2
    assert not (photos / "ds").exists()
