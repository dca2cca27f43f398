"""``img2img models``: the catalogue of published checkpoints, and ``fetch`` (offline).

Downloads come from a local HTTP server serving files saved the way the upstream projects
save them (the replicas of test_foreign_reference / test_foreign_sr), never the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from test_foreign_reference import RefUnetGenerator, randomise, resnet
from test_foreign_sr import LAYOUTS, _rrdb_state

from img2img import cli
from img2img.checkpoint import read_meta
from img2img.data.io import read_image, write_image
from img2img.foreign import recognise
from img2img.foreign.catalogue import CATALOGUE, FAMILIES, lookup
from img2img.inference.loader import TASKS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    try:
        code = cli.main(["models", *(str(a) for a in args)])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err




@pytest.fixture(scope="module")
def horse2zebra() -> tuple[bytes, torch.nn.Module]:
    """A reference CycleGAN generator file, as ``torch.save(netG.state_dict())`` writes it."""
    import io

    ref = resnet(9, ngf=4).eval()
    buf = io.BytesIO()
    torch.save(ref.state_dict(), buf)
    return buf.getvalue(), ref


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- the catalogue


def test_list_prints_every_entry_and_json_parses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys)
    assert code == 0, err
    table, bundled = out.split("\nbundled ", 1)
    assert "sr_x4_naip" in bundled and "srresnet" in bundled  # the model inside the package
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["NAME", "FAMILY", "TASK", "SCALE", "LICENCE"]
    rows = {line.split()[0]: line for line in lines[1:] if line and not line[0].isspace()
            and not line.startswith("*")}
    assert set(rows) == set(CATALOGUE)
    for m in CATALOGUE.values():
        assert f"{m.family}" in rows[m.name] and f"x{m.scale}" in rows[m.name]
        assert m.licence in rows[m.name] and m.description in rows[m.name]
        assert any(line.strip() == m.url for line in lines)  # its upstream URL, on the next line
    assert "weights are not licensed separately" in out
    code, out, err = _run(capsys, "--json")
    assert code == 0, err
    entries = json.loads(out)
    assert [e["name"] for e in entries] == list(CATALOGUE)
    h2z = next(e for e in entries if e["name"] == "horse2zebra")
    assert h2z == {"name": "horse2zebra", "family": "cyclegan", "task": "cyclegan", "scale": 1,
                   "licence": "BSD-2-Clause", "sha256": None,
                   "url": "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/"
                          "horse2zebra.pth",
                   "description": h2z["description"], "licence_note": h2z["licence_note"]}
    x4 = next(e for e in entries if e["name"] == "RealESRGAN_x4plus")
    assert (x4["task"], x4["scale"], x4["licence"]) == ("sr", 4, "BSD-3-Clause")
    assert x4["url"] == ("https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/"
                         "RealESRGAN_x4plus.pth")


def test_catalogue_entries_are_consistent() -> None:
    names = list(CATALOGUE)
    assert len(names) == 26  # 18 CycleGAN + 5 pix2pix + 3 Real-ESRGAN (a dict hides duplicates)
    assert len({n.lower() for n in names}) == len(names)  # lookup folds case
    assert len({m.url for m in CATALOGUE.values()}) == len(names)
    for m in CATALOGUE.values():
        assert m.url.startswith("https://"), m.url  # no entry needs plain http
        assert m.url.endswith(".pth") and m.description and m.licence
        assert m.task in TASKS and FAMILIES[m.family] == m.task
        assert m.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", m.sha256)
        assert re.fullmatch(r"[A-Za-z0-9_]+", m.name)  # a safe file name for DIR/NAME
        assert m.scale == (int(m.name.split("_x")[1][0]) if m.task == "sr" else 1)
    # nothing observed here, so nothing claimed
    assert all(m.sha256 is None for m in CATALOGUE.values())
    assert lookup("HORSE2ZEBRA").name == "horse2zebra"


def test_families_are_the_networks_the_importer_recognises() -> None:
    nets = {
        "cyclegan": resnet(9, ngf=4).state_dict(),
        "pix2pix": randomise(RefUnetGenerator(3, 3, 8, 2, "batch")).state_dict(),
        "real-esrgan": _rrdb_state(LAYOUTS["basicsr"](2), 3, 3, 2),
    }
    assert set(nets) == set(FAMILIES) == {m.family for m in CATALOGUE.values()}
    for family, state in nets.items():
        imported = recognise(state)
        assert imported.task == FAMILIES[family], family
    assert recognise(nets["real-esrgan"]).scale == 4


# --------------------------------------------------------------------------- fetch


def test_fetch_imports_a_model_that_translates(server: tuple[str, Path], tmp_path: Path,
                                               horse2zebra, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = server
    data, ref = horse2zebra
    (served / "horse2zebra.pth").write_bytes(data)
    url = f"{base}/horse2zebra.pth"
    digest = hashlib.sha256(data).hexdigest()
    out = tmp_path / "models"
    code, stdout, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url", url,
                             "--quiet")
    assert code == 0, err
    assert _left(out) == ["horse2zebra.safetensors"]  # no temp files, original not kept
    assert f"sha256 {digest}" in stdout and str(out / "horse2zebra.safetensors") in stdout
    meta = read_meta(out / "horse2zebra.safetensors")
    assert meta.extra["url"] == url and meta.extra["source_sha256"] == digest
    assert meta.extra["source"] == "horse2zebra.pth"
    assert meta.extra["catalogue_name"] == "horse2zebra"
    assert (meta.arch, meta.task, meta.direction) == ("resnet_9blocks", "cyclegan", "A2B")
    # the written checkpoint translates an image as the reference network does
    img = photo_like(32, 32, seed=3)
    write_image(tmp_path / "in" / "a.png", img)
    code = cli.translate_main(["--checkpoint", str(out / "horse2zebra.safetensors"),
                               "--input", str(tmp_path / "in"), "--output",
                               str(tmp_path / "res"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    got = read_image(tmp_path / "res" / "a.png")
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        want = ((ref(x) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255
    assert got.shape == img.shape
    assert np.abs(got.astype(int) - np.rint(want).astype(int)).max() <= 1
    capsys.readouterr()
    # again: skipped, untouched
    before = (out / "horse2zebra.safetensors").stat().st_mtime_ns
    code, stdout, _ = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url", url)
    assert code == 0 and "already exists; skipped" in stdout
    assert (out / "horse2zebra.safetensors").stat().st_mtime_ns == before
    # --force fetches again; --keep-original keeps the download as NAME.pth; and without --url
    # the catalogue's URL is the one used (pointed at the local server here)
    entry = CATALOGUE["horse2zebra"]
    monkeypatch.setitem(CATALOGUE, "horse2zebra", dataclasses.replace(entry, url=url))
    code, stdout, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--force",
                             "--keep-original")
    assert code == 0, err
    assert re.search(r"horse2zebra: 100%.*B/s", err)  # a progress bar in bytes
    assert _left(out) == ["horse2zebra.pth", "horse2zebra.safetensors"]
    assert (out / "horse2zebra.pth").read_bytes() == data
    assert read_meta(out / "horse2zebra.safetensors").extra["url"] == url


def test_offline_or_missing_file_is_one_line_and_leaves_nothing(
        server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "models"
    refused = "http://127.0.0.1:1/horse2zebra.pth"
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url", refused)
    assert code == 1
    assert err.startswith(f"error: cannot download {refused}: ")
    assert "refused" in err.lower() and len(err.strip().splitlines()) == 1
    assert not out.exists()  # the folder it would have created is not left behind
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url",
                        f"{server[0]}/horse2zebra.pth", "--quiet")
    assert code == 1 and "HTTP 404" in err and len(err.strip().splitlines()) == 1
    assert _left(out) == ["mine.txt"]  # no temp files


def test_unknown_name_and_bad_url_are_usage_errors(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "models"
    code, _, err = _run(capsys, "fetch", "hors2zebra", "--out", out)
    assert code == 2 and "unknown model 'hors2zebra'" in err and "did you mean horse2zebra" in err
    code, _, err = _run(capsys, "fetch", "RealESRGAN_x4", "--out", out)
    assert code == 2 and "RealESRGAN_x4plus" in err
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url", "ftp://x/y.pth")
    assert code == 2 and "https://" in err
    code, _, err = _run(capsys, "fetch", "horse2zebra")
    assert code == 2 and "--out" in err
    assert not out.exists()


def test_a_known_sha256_that_differs_is_refused(server: tuple[str, Path], tmp_path: Path,
                                                horse2zebra, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = server
    data, _ = horse2zebra
    (served / "horse2zebra.pth").write_bytes(data)
    wrong = hashlib.sha256(b"another file").hexdigest()
    entry = dataclasses.replace(CATALOGUE["horse2zebra"], url=f"{base}/horse2zebra.pth",
                                sha256=wrong)
    monkeypatch.setitem(CATALOGUE, "horse2zebra", entry)
    out = tmp_path / "models"
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--quiet")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "sha256 mismatch" in err and f"expected {wrong}" in err
    assert hashlib.sha256(data).hexdigest() in err
    assert not out.exists()
    # the known value is checked for a --url mirror too, and a matching one is reported
    right = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(CATALOGUE, "horse2zebra", dataclasses.replace(entry, sha256=right))
    code, stdout, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url",
                             f"{base}/horse2zebra.pth", "--quiet")
    assert code == 0 and "matches the catalogue's" in stdout, err


def test_a_file_of_another_kind_is_refused(server: tuple[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    base, served = server
    torch.save({"params_ema": _rrdb_state(LAYOUTS["basicsr"](2), 3, 3, 2)},
               served / "sr.pth")
    (served / "page.pth").write_text("<html>moved</html>")
    out = tmp_path / "models"
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url",
                        f"{base}/sr.pth", "--quiet")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "the catalogue lists a cyclegan generator" in err and "(task sr, x4)" in err
    code, _, err = _run(capsys, "fetch", "RealESRGAN_x2plus", "--out", out, "--url",
                        f"{base}/sr.pth", "--quiet")
    assert code == 1 and "(task sr, x4)" in err and "(task sr, x2)" in err  # wrong scale
    code, _, err = _run(capsys, "fetch", "horse2zebra", "--out", out, "--url",
                        f"{base}/page.pth", "--quiet")
    assert code == 1 and "not a checkpoint the toolkit can run" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
