"""Tests for the dataset downloader (local HTTP server and file:// URLs, never the internet)."""

from __future__ import annotations

import importlib.util
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from img2img.data.download import CATALOGUE, lookup

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_ds_download", ROOT / "datasets/download.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


download = _script()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder): a local HTTP server on a free port."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


CYCLEGAN_MEMBERS = {
    "horse2zebra/trainA/x.jpg": b"a",
    "horse2zebra/trainB/y.jpg": b"b",
    "horse2zebra/testA/z.jpg": b"c",
    "horse2zebra/testB/w.jpg": b"d",
}


def _run(*args: str) -> int:
    return download.main([*args, "--quiet"])


def _left(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_download_from_local_http_server(server: tuple[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    base, served = server
    _zip(served / "horse2zebra.zip", CYCLEGAN_MEMBERS)
    out = tmp_path / "datasets"
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 0
    assert (out / "horse2zebra/trainA/x.jpg").read_bytes() == b"a"
    assert (out / "horse2zebra/testB/w.jpg").exists()
    assert _left(out) == ["horse2zebra"]  # no temp files
    assert f"{base}/horse2zebra.zip" in capsys.readouterr().out
    # existing folder: skipped, untouched
    (out / "horse2zebra/mine.txt").write_text("keep")
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 0
    assert "already exists" in capsys.readouterr().out
    assert (out / "horse2zebra/mine.txt").exists()
    # --overwrite replaces it
    assert _run("horse2zebra", "--out", str(out), "--url-base", base, "--overwrite") == 0
    assert not (out / "horse2zebra/mine.txt").exists() and _left(out) == ["horse2zebra"]


def test_pix2pix_tar_gz_from_file_url(tmp_path: Path) -> None:
    served = tmp_path / "mirror dir"
    served.mkdir()
    with tarfile.open(served / "maps.tar.gz", "w:gz") as tf:
        for name, data in {"maps/train/1.jpg": b"ab", "maps/val/2.jpg": b"cd"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    assert _run("pix2pix/maps", "--out", str(out), "--url-base", served.as_uri()) == 0
    assert (out / "pix2pix_maps/train/1.jpg").read_bytes() == b"ab"  # named by catalogue
    assert _left(out) == ["pix2pix_maps"]


def test_corrupt_archive_leaves_nothing(server: tuple[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    base, served = server
    good = _zip(tmp_path / "good.zip", CYCLEGAN_MEMBERS).read_bytes()
    (served / "horse2zebra.zip").write_bytes(good[: len(good) // 2])
    out = tmp_path / "datasets"
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 1
    err = capsys.readouterr().err
    assert "horse2zebra.zip" in err and "not a valid archive" in err
    assert not out.exists()
    out.mkdir()  # an existing --out keeps only what it had
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 1
    assert _left(out) == []


def test_unreachable_and_missing_urls(server: tuple[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "datasets"
    assert _run("apple2orange", "--out", str(out), "--url-base", "http://127.0.0.1:1/") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot download http://127.0.0.1:1/apple2orange.zip: ")
    assert "refused" in err.lower() and len(err.splitlines()) == 1
    assert _run("apple2orange", "--out", str(out), "--url-base", server[0]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert _run("apple2orange", "--out", str(out), "--url-base",
                (tmp_path / "nowhere").as_uri()) == 1
    assert "apple2orange.zip" in capsys.readouterr().err and not out.exists()


def test_unsafe_members_rejected(server: tuple[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    base, served = server
    _zip(served / "facades.zip", {"facades/trainA/x.jpg": b"a", "../evil": b"x"})
    out = tmp_path / "datasets"
    assert _run("facades", "--out", str(out), "--url-base", base) == 1
    assert "unsafe member '../evil'" in capsys.readouterr().err
    assert not (tmp_path / "evil").exists() and not out.exists()
    # a tar symlink pointing outside the archive
    with tarfile.open(served / "night2day.tar.gz", "w:gz") as tf:
        link = tarfile.TarInfo("night2day/train/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../secret"
        tf.addfile(link)
    assert _run("night2day", "--out", str(out), "--url-base", base) == 1
    assert "outside the archive" in capsys.readouterr().err and not out.exists()


def test_catalogue_list_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _run("--list") == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"horse2zebra", "maps", "pix2pix_maps", "edges2shoes", "cityscapes"} <= set(names)
    assert lookup("cyclegan/maps").archive == "maps.zip"
    assert lookup("pix2pix_facades").archive == "facades.tar.gz"
    assert len(CATALOGUE) == 18
    out = tmp_path / "datasets"
    assert _run("cityscapes", "--out", str(out)) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err and not out.exists()
    assert _run("hors2zebra", "--out", str(out)) == 2
    assert "did you mean horse2zebra" in capsys.readouterr().err
    assert _run() == 2
