"""Tests for img2img.data.scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imgfactory import make_messy_tree

from img2img.data.scan import expand_inputs, is_image_path, list_images, scan_inputs


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def _rel(root: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_is_image_path_case_insensitive() -> None:
    assert is_image_path("a/B.JPG") and is_image_path("x.Tiff") and is_image_path("y.webp")
    assert not is_image_path("notes.txt") and not is_image_path("jpg")


def test_list_images_sorted_by_relative_path(tmp_path: Path) -> None:
    _touch(tmp_path, "b.png", "a/c.JPG", "a.png", "A.png", "z/y/x.tif", "a/b/d.jpeg")
    assert _rel(tmp_path, list_images(tmp_path)) == [
        "A.png",
        "a.png",
        "a/b/d.jpeg",
        "a/c.JPG",
        "b.png",
        "z/y/x.tif",
    ]
    assert all(p.is_relative_to(tmp_path) for p in list_images(tmp_path))


def test_list_images_skips_hidden_and_other_suffixes(tmp_path: Path) -> None:
    _touch(
        tmp_path, "ok.PNG", ".hidden.png", ".git/x.png", "sub/.cache/y.jpg", "n.txt", "sub/z.bmp"
    )
    assert _rel(tmp_path, list_images(tmp_path)) == ["ok.PNG", "sub/z.bmp"]


def test_list_images_non_recursive(tmp_path: Path) -> None:
    _touch(tmp_path, "top.jpg", "sub/deep.jpg")
    assert _rel(tmp_path, list_images(tmp_path, recursive=False)) == ["top.jpg"]


def test_list_images_missing_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(missing)


def test_list_images_survives_symlink_loop_and_follows_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    other = tmp_path / "other"
    _touch(root, "a.png", "sub/b.png")
    _touch(other, "c.png")
    os.symlink(root, root / "sub" / "loop")  # points back up: must not recurse forever
    os.symlink(other, root / "linked")
    os.symlink(root / "missing.png", root / "broken.png")  # dangling link is skipped
    assert _rel(root, list_images(root)) == ["a.png", "linked/c.png", "sub/b.png"]


def test_messy_tree_listing(tmp_path: Path) -> None:
    tree = make_messy_tree(tmp_path)
    expected = sorted(rel for rel, s in tree.items() if s.listed)
    assert _rel(tmp_path, list_images(tmp_path)) == expected
    assert "bad/text.jpg" in expected  # image suffix: listed, fails later at decode
    assert "notes.txt" not in expected and ".hidden/secret.png" not in expected


def test_expand_single_file(tmp_path: Path) -> None:
    _touch(tmp_path, "d/x.jpg", "d/readme.txt")
    assert expand_inputs(str(tmp_path / "d/x.jpg")) == (tmp_path / "d", [tmp_path / "d/x.jpg"])
    # An explicitly named file is taken whatever its suffix (decoding reports problems).
    assert expand_inputs(str(tmp_path / "d/readme.txt"))[1] == [tmp_path / "d/readme.txt"]


def test_expand_folder_is_recursive(tmp_path: Path) -> None:
    _touch(tmp_path, "d/x.jpg", "d/s/y.png", "d/s/z.txt", "d/.h/w.png")
    base, files = expand_inputs(str(tmp_path / "d"))
    assert base == tmp_path / "d"
    assert _rel(base, files) == ["s/y.png", "x.jpg"]


def test_expand_recursive_glob(tmp_path: Path) -> None:
    _touch(tmp_path, "photos/a.jpg", "photos/x/b.jpg", "photos/x/y/c.jpg", "photos/x/d.png")
    _touch(tmp_path, "photos/.hid/e.jpg", "photos/x/f.JPG")
    base, files = expand_inputs(str(tmp_path / "photos/**/*.jpg"))
    assert base == tmp_path / "photos"
    assert _rel(base, files) == ["a.jpg", "x/b.jpg", "x/y/c.jpg"]


def test_expand_simple_glob_is_not_recursive(tmp_path: Path) -> None:
    _touch(tmp_path, "p/a1.png", "p/a2.png", "p/b1.png", "p/sub/a3.png")
    base, files = expand_inputs(str(tmp_path / "p/a?.png"))
    assert base == tmp_path / "p" and _rel(base, files) == ["a1.png", "a2.png"]
    assert _rel(base, expand_inputs(str(tmp_path / "p/[!a]*"))[1]) == ["b1.png"]
    assert _rel(base, expand_inputs(str(tmp_path / "p/*/a*.png"))[1]) == ["sub/a3.png"]


def test_expand_glob_base_is_longest_non_magic_prefix(tmp_path: Path) -> None:
    _touch(tmp_path, "data/set1/img/a.png", "data/set2/img/b.png", "data/set2/img/c.txt")
    base, files = expand_inputs(str(tmp_path / "data/set*/img/*"))
    assert base == tmp_path / "data"
    assert _rel(base, files) == ["set1/img/a.png", "set2/img/b.png"]
    base, files = expand_inputs(str(tmp_path / "data/**"))
    assert _rel(base, files) == ["set1/img/a.png", "set2/img/b.png"]


def test_expand_relative_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path, "a.png", "b.jpg")
    monkeypatch.chdir(tmp_path)
    assert expand_inputs("*.png") == (Path("."), [Path("a.png")])


def test_expand_nothing_matched(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png")
    assert expand_inputs(str(tmp_path / "*.jpg")) == (tmp_path, [])
    assert expand_inputs(str(tmp_path / "nope/*.jpg")) == (tmp_path / "nope", [])
    assert expand_inputs(str(tmp_path / "missing.png")) == (None, [])
    (tmp_path / "empty").mkdir()
    assert expand_inputs(str(tmp_path / "empty")) == (tmp_path / "empty", [])


def _reasons(root: Path, rejected: list[tuple[Path, str]]) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): reason for p, reason in rejected}


def test_scan_inputs_reports_what_a_folder_run_leaves_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _touch(root, "a.png", "still.gif", "sub/photo.HEIC", "sub/x.jp2", "notes.txt", ".h/y.avif")
    os.symlink(root / "nowhere.png", root / "sub" / "gone.png")
    os.symlink(root / "nowhere.txt", root / "gone.txt")  # not image-like: not an input
    os.symlink(root / "sub" / "self.jpg", root / "sub" / "self.jpg")  # a link loop
    found = scan_inputs(str(root))
    assert found.base == root and _rel(root, found.files) == ["a.png", "still.gif"]
    reasons = _reasons(root, found.rejected)
    assert sorted(reasons) == ["sub/gone.png", "sub/photo.HEIC", "sub/self.jpg", "sub/x.jp2"]
    assert reasons["sub/gone.png"].startswith("broken symbolic link")
    assert str(root / "nowhere.png") in reasons["sub/gone.png"]
    assert reasons["sub/self.jpg"].startswith("broken symbolic link")
    assert reasons["sub/photo.HEIC"].startswith("unsupported image format .heic")
    # the listing for training is unchanged
    assert _rel(root, list_images(root)) == ["a.png"]


def test_scan_inputs_glob_reports_every_match_left_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _touch(root, "a.png", "b.txt", "c.heic", "sub/d.png", ".hidden.png")
    os.symlink(root / "nowhere.png", root / "e.png")
    found = scan_inputs(f"{root}/*")
    assert _rel(root, found.files) == ["a.png"]
    reasons = _reasons(root, found.rejected)
    assert sorted(reasons) == ["b.txt", "c.heic", "e.png"]
    assert reasons["b.txt"].startswith("not an image file name (.txt")
    found = scan_inputs(f"{root}/**/*.png")
    assert _rel(root, found.files) == ["a.png", "sub/d.png"]
    assert sorted(_reasons(root, found.rejected)) == ["e.png"]
    assert scan_inputs(str(root / "e.png")).rejected == [(root / "e.png", reasons["e.png"])]
