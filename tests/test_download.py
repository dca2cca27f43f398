"""Tests for the dataset downloader (local HTTP server and file:// URLs, never the internet)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import img2img.data.archive as archive
import img2img.data.fetch as fetch_module
from img2img.data.download import CATALOGUE, dataset_url, lookup

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_ds_download", ROOT / "datasets/download.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


download = _script()




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
    err = capsys.readouterr().err
    assert "'night2day/train/link'" in err and "symbolic link" in err and not out.exists()


# --------------------------------------------------------------------------- archive safety


@pytest.fixture(params=["tarfile as installed", "no tarfile data filter"])
def tar_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: with tarfile as installed, and with a tarfile that has no
    ``data_filter`` (as Python 3.10.0-3.10.11 and 3.11.0-3.11.3), which extracts links as
    the archive says."""
    if request.param == "no tarfile data filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


def _no_tarfile_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make tarfile's own extraction fail: the downloader must write members itself."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tarfile extraction used")

    monkeypatch.setattr(tarfile.TarFile, "extractall", refuse)
    monkeypatch.setattr(tarfile.TarFile, "extract", refuse)


def _tar(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    """A tar.gz: ``(name, bytes)`` is a file, ``(name, "->target")`` a symlink, ``(name,
    "=>target")`` a hard link, ``(name, "type:X")`` a bare member of tar type X."""
    with tarfile.open(path, "w:gz") as tf:
        for name, what in members:
            info = tarfile.TarInfo(name)
            if isinstance(what, bytes):
                info.size = len(what)
                tf.addfile(info, io.BytesIO(what))
                continue
            if what.startswith("type:"):
                info.type = what[5:].encode()
            else:
                info.type = tarfile.SYMTYPE if what.startswith("->") else tarfile.LNKTYPE
                info.linkname = what[2:]
            tf.addfile(info)
    return path


def _type(kind: bytes) -> str:
    return "type:" + kind.decode()


def _outside(tmp_path: Path, name: str) -> list[Path]:
    """Where an escaping ``name`` could have landed: --out's parents (tmp_path and above)."""
    return [p for p in (tmp_path / name, tmp_path.parent / name, tmp_path.parent.parent / name)
            if p.exists() or p.is_symlink()]


@pytest.mark.parametrize("chain", [
    # the chain of issue 12: x -> ., y -> x/.., z -> y/.. and a file under z/
    [("x", "->."), ("y", "->x/.."), ("z", "->y/.."), ("z/evil12", b"pwned")],
    # two more links climb above --out itself (on an unchecked extraction: tmp_path/..)
    [("x", "->."), ("y", "->x/.."), ("z", "->y/.."), ("v", "->z/.."), ("w", "->v/.."),
     ("w/evil12", b"pwned")],
])
def test_symlink_chain_refused(server: tuple[str, Path], tmp_path: Path, tar_filter: str,
                               chain: list[tuple[str, bytes | str]],
                               capsys: pytest.CaptureFixture) -> None:
    base, served = server
    _tar(served / "night2day.tar.gz", chain)
    out = tmp_path / "datasets"
    assert _run("night2day", "--out", str(out), "--url-base", base) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "night2day.tar.gz" in err
    assert "unsafe member 'x'" in err and "symbolic link" in err
    assert not out.exists()  # nothing inside --out either (it did not exist before)
    assert _outside(tmp_path, "evil12") == []
    out.mkdir()  # an existing --out keeps only what it had
    assert _run("night2day", "--out", str(out), "--url-base", base) == 1
    assert _left(out) == [] and _outside(tmp_path, "evil12") == []


def test_hard_links_refused(server: tuple[str, Path], tmp_path: Path, tar_filter: str,
                            capsys: pytest.CaptureFixture) -> None:
    base, served = server
    secret = tmp_path / "passwd"  # an /etc/passwd-like file outside --out
    secret.write_text("root:x:0:0")
    out = tmp_path / "datasets"
    for target in (str(secret), "../../passwd", "edges2shoes/train/1.jpg"):
        _tar(served / "edges2shoes.tar.gz", [("edges2shoes/train/1.jpg", b"ab"),
                                             ("edges2shoes/train/pw", "=>" + target),
                                             ("edges2shoes/train/pw", b"overwritten")])
        assert _run("edges2shoes", "--out", str(out), "--url-base", base) == 1
        err = capsys.readouterr().err
        assert "unsafe member 'edges2shoes/train/pw'" in err and "hard link" in err
        assert secret.read_text() == "root:x:0:0" and secret.stat().st_nlink == 1
        assert not out.exists()


@pytest.mark.parametrize("name", ["/abs/evil12", "../evil12", "night2day/../../evil12",
                                  "night2day\\..\\..\\evil12", "C:/evil12", "./../evil12"])
def test_absolute_and_dotdot_members_refused(server: tuple[str, Path], tmp_path: Path,
                                             tar_filter: str, name: str,
                                             capsys: pytest.CaptureFixture) -> None:
    base, served = server
    out = tmp_path / "datasets"
    _tar(served / "night2day.tar.gz", [("night2day/train/1.jpg", b"ok"), (name, b"x")])
    _zip(served / "horse2zebra.zip", {**CYCLEGAN_MEMBERS, name: b"x"})
    for ds in ("night2day", "horse2zebra"):
        assert _run(ds, "--out", str(out), "--url-base", base) == 1
        err = capsys.readouterr().err
        assert f"unsafe member {name!r}" in err
        assert "absolute path" in err or "'..' in path" in err
        assert not out.exists() and _outside(tmp_path, "evil12") == []
    assert not Path("/abs/evil12").exists()


@pytest.mark.parametrize("kind, word", [(tarfile.FIFOTYPE, "FIFO"), (tarfile.CHRTYPE, "device"),
                                        (tarfile.BLKTYPE, "device")])
def test_special_tar_members_refused(server: tuple[str, Path], tmp_path: Path, tar_filter: str,
                                     kind: bytes, word: str,
                                     capsys: pytest.CaptureFixture) -> None:
    base, served = server
    _tar(served / "night2day.tar.gz", [("night2day/train/1.jpg", b"ok"),
                                       ("night2day/train/odd", _type(kind))])
    out = tmp_path / "datasets"
    assert _run("night2day", "--out", str(out), "--url-base", base) == 1
    err = capsys.readouterr().err
    assert "unsafe member 'night2day/train/odd'" in err and word in err and not out.exists()


def test_zip_symlink_and_fifo_entries_refused(server: tuple[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    base, served = server
    out = tmp_path / "datasets"
    for mode, word in ((stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "FIFO")):
        with zipfile.ZipFile(served / "horse2zebra.zip", "w") as zf:
            for name, data in CYCLEGAN_MEMBERS.items():
                zf.writestr(name, data)
            info = zipfile.ZipInfo("horse2zebra/trainA/link")
            info.create_system, info.external_attr = 3, mode << 16
            zf.writestr(info, "../../../../etc/passwd")
        assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 1
        err = capsys.readouterr().err
        assert "unsafe member 'horse2zebra/trainA/link'" in err and word in err
        assert not out.exists()


def test_tar_extracts_without_tarfile_extraction(tmp_path: Path, tar_filter: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tarfile_extraction(monkeypatch)
    served = tmp_path / "mirror"
    served.mkdir()
    _tar(served / "facades.tar.gz", [("./facades/", _type(tarfile.DIRTYPE)),
                                     ("./facades/train/1.jpg", b"one"),
                                     ("facades/val/2.jpg", b"two"),
                                     ("facades/train/1.jpg", b"ONE")])  # later copy wins
    out = tmp_path / "out"
    assert _run("pix2pix_facades", "--out", str(out), "--url-base", served.as_uri()) == 0
    ds = out / "pix2pix_facades"
    assert (ds / "train/1.jpg").read_bytes() == b"ONE"
    assert (ds / "val/2.jpg").read_bytes() == b"two"
    assert sorted(p.name for p in ds.iterdir()) == ["download.json", "train", "val"]
    assert _left(out) == ["pix2pix_facades"]


def test_archive_larger_than_free_space_refused(server: tuple[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    base, served = server
    with zipfile.ZipFile(served / "horse2zebra.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("horse2zebra/trainA/big.jpg", bytes(8 << 20))  # 8 MiB, ~8 KB compressed
    _tar(served / "night2day.tar.gz", [("night2day/train/big.jpg", bytes(8 << 20))])
    usage = archive.shutil.disk_usage  # where the free-space check reads it
    monkeypatch.setattr(archive.shutil, "disk_usage",
                        lambda p: usage(p)._replace(free=1 << 20))  # 1 MiB free
    out = tmp_path / "datasets"
    for ds in ("horse2zebra", "night2day"):
        assert _run(ds, "--out", str(out), "--url-base", base) == 1
        err = capsys.readouterr().err
        assert "unpacks to at least 0.01 GB but only 0.00 GB are free" in err
        assert not out.exists()


# --------------------------------------------------------------------------- hashes and URLs


def test_observed_size_and_sha256_recorded(server: tuple[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    base, served = server
    data = _zip(served / "horse2zebra.zip", CYCLEGAN_MEMBERS).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    out = tmp_path / "datasets"
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 0
    printed = capsys.readouterr().out
    assert f"{len(data)} bytes, sha256 {digest}" in printed and "--sha256" in printed
    manifest = json.loads((out / "horse2zebra/download.json").read_text())
    assert manifest["url"] == f"{base}/horse2zebra.zip"
    assert (manifest["size"], manifest["sha256"], manifest["verified"]) == (len(data), digest,
                                                                             False)
    # pinning that hash: the next download is checked against it
    assert _run("horse2zebra", "--out", str(out), "--url-base", base, "--overwrite",
                "--sha256", digest.upper()) == 0
    assert "matches the expected SHA-256" in capsys.readouterr().out
    assert json.loads((out / "horse2zebra/download.json").read_text())["verified"] is True
    assert _left(out) == ["horse2zebra"]


def test_sha256_or_size_mismatch_refused(server: tuple[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    base, served = server
    data = _zip(served / "horse2zebra.zip", CYCLEGAN_MEMBERS).read_bytes()
    out = tmp_path / "datasets"
    wrong = hashlib.sha256(b"another archive").hexdigest()
    # a known hash in the catalogue
    monkeypatch.setitem(CATALOGUE, "horse2zebra",
                        dataclasses.replace(CATALOGUE["horse2zebra"], sha256=wrong))
    assert _run("horse2zebra", "--out", str(out), "--url-base", base) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "horse2zebra.zip: sha256 mismatch" in err
    assert f"expected {wrong}" in err and hashlib.sha256(data).hexdigest() in err
    assert not out.exists()
    # the user's --sha256 replaces the catalogue's; an existing --out keeps only what it had
    out.mkdir()
    assert _run("horse2zebra", "--out", str(out), "--url-base", base, "--sha256",
                hashlib.sha256(data).hexdigest()) == 0
    assert _run("horse2zebra", "--out", str(out), "--url-base", base, "--overwrite",
                "--sha256", wrong) == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert _left(out) == ["horse2zebra"]  # the earlier download is kept, no temp files
    assert (out / "horse2zebra/trainA/x.jpg").read_bytes() == b"a"
    # a known size that the server's Content-Length contradicts
    monkeypatch.setitem(CATALOGUE, "horse2zebra",
                        dataclasses.replace(CATALOGUE["horse2zebra"], size=len(data) + 1))
    assert _run("horse2zebra", "--out", str(tmp_path / "o2"), "--url-base", base) == 1
    assert f"offers {len(data)} bytes, expected {len(data) + 1}" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    # a malformed --sha256 is a usage error
    assert _run("horse2zebra", "--out", str(tmp_path / "o3"), "--sha256", "abc") == 2
    assert "64 hexadecimal digits" in capsys.readouterr().err


def test_https_redirect_to_plain_http_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    data = _zip(tmp_path / "a.zip", CYCLEGAN_MEMBERS).read_bytes()

    class _Resp(io.BytesIO):
        headers = {"Content-Length": str(len(data))}

        def geturl(self) -> str:
            return "http://mirror.example/horse2zebra.zip"

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen",
                        lambda url, timeout: _Resp(data))
    out = tmp_path / "datasets"
    assert _run("horse2zebra", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "redirected to http://mirror.example/horse2zebra.zip, which is not https" in err
    assert not out.exists()


def test_catalogue_list_and_usage(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _run("--list") == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"horse2zebra", "maps", "pix2pix_maps", "edges2shoes", "cityscapes"} <= set(names)
    assert lookup("cyclegan/maps").archive == "maps.zip"
    assert lookup("pix2pix_facades").archive == "facades.tar.gz"
    assert len(CATALOGUE) == 18
    # both dataset folders are fetched over https by default
    assert dataset_url(lookup("edges2shoes")) == \
        "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/edges2shoes.tar.gz"
    assert all(dataset_url(d).startswith("https://efrosgans.eecs.berkeley.edu/")
               for d in CATALOGUE.values())
    out = tmp_path / "datasets"
    assert _run("cityscapes", "--out", str(out)) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err and not out.exists()
    assert _run("hors2zebra", "--out", str(out)) == 2
    assert "did you mean horse2zebra" in capsys.readouterr().err
    assert _run() == 2
