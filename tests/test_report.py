"""The HTML pages a user opens: a training run's report.html and translate --html's gallery.

Each page must exist, link only to files that exist inside its own folder, and load in a
real browser (headless Chromium through its WebDriver, both from Debian's packages; see
tools/ci_browser.sh) with every image decoded -- from the folder and from a copy of it.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from imgfactory import (
    photo_like,
    write_png,
    write_rgb16_png,
    write_rgba_png,
    write_truncated_png,
)

from img2img import cli
from img2img.checkpoint import meta_for, save_generator
from img2img.data.io import read_image, write_image
from img2img.engine import charts, report
from img2img.engine.trainer import train
from img2img.nn import build_generator
from img2img.tasks import make_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HINT = html.escape(charts.INSTALL_HINT)  # as the page shows it


# --------------------------------------------------------------------------- page helpers

class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, value))


def refs(page: Path) -> list[tuple[str, str]]:
    """(tag, url) of every href and src on the page."""
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def check_links(page: Path, root: Path) -> list[Path]:
    """Every link on ``page`` is relative, names an existing file inside ``root``; returns
    the files its <img> tags show."""
    images = []
    for tag, url in refs(page):
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page}: absolute link {url}"
        if not parts.path:  # "#section"
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.is_file(), f"{page}: {url} -> {target} does not exist"
        assert root.resolve() in target.parents, f"{page}: {url} leaves {root}"
        if tag == "img":
            images.append(target)
    return images


def need_matplotlib() -> None:
    """Charts need the ``report`` extra: skipped without it, but required under CI."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the chart tests need matplotlib (pip install -e '.[report]')")
        pytest.skip("needs matplotlib (pip install -e '.[report]')")


# --------------------------------------------------------------------------- the browser

def images_in_browser(driver, page: Path) -> list[tuple[str, int]]:  # noqa: ANN001
    """(src, naturalWidth) of every image once the page has loaded from its file:// URL."""
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    return [(src, int(w)) for src, w in driver.execute_script(
        "return Array.from(document.images).map(i => [i.currentSrc, i.naturalWidth])")]


def assert_all_loaded(driver, page: Path, at_least: int) -> None:  # noqa: ANN001
    shown = images_in_browser(driver, page)
    assert len(shown) >= at_least, shown
    broken = [src for src, width in shown if width == 0]
    assert not broken, f"{page}: images that did not load: {broken[:5]}"


def moved_copy(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` and delete the original (as a user copying the folder)."""
    shutil.copytree(src, dst, symlinks=True)
    shutil.rmtree(src)
    return dst


# --------------------------------------------------------------------------- run report

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 6-step CycleGAN run: losses at every step, sample grids at steps 3 and 6."""
    root = tmp_path_factory.mktemp("report_run")
    for i in range(4):
        write_image(root / "data" / "trainA" / f"a{i}.png", photo_like(36, 36, seed=i))
        write_image(root / "data" / "trainB" / f"b{i}.png", photo_like(36, 36, seed=40 + i))
    cfg = make_config(task="cyclegan", data=str(root / "data"), out=str(root / "run"), steps=6,
                      batch_size=1, generator="resnet_6blocks", ngf=8, ndf=8, load_size=36,
                      crop_size=32, workers=0, device="cpu", quiet=True, log_every=1,
                      sample_every=3, save_every=0, seed=0)
    return train(cfg)


def fresh_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run for one test to write its report into."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_log_rows_carry_a_time(run_dir: Path) -> None:
    rows = [json.loads(line) for line in (run_dir / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    times = [r["time"] for r in rows]
    assert times == sorted(times) and times[-1] - times[0] < 600


def test_report_shows_losses_samples_config_and_throughput(run_dir: Path,
                                                           tmp_path: Path) -> None:
    need_matplotlib()
    run = fresh_run(run_dir, tmp_path)
    page = report.write_report(run)
    assert page == run / "report.html"
    text = page.read_text(encoding="utf-8")
    shown = check_links(page, run)
    charts_dir = run / report.CHART_DIR
    expected = {charts_dir / n for n in ("loss_G.png", "loss_D.png", "lr.png", "throughput.png")}
    assert expected <= set(shown), shown
    for chart in expected:
        assert read_image(chart).shape[1] >= 600  # a real chart, decoded
    samples = [p for p in shown if p.parent.name == "samples"]
    assert [p.name for p in samples] == ["step_0000006.png", "step_0000003.png"]  # newest first
    assert "6 of 6 (100%)" in text
    for loss in ("G_A2B", "cycle_A", "idt_B", "D_A", "D_B"):
        assert f"<th>{loss}</th>" in text
    assert "steps/s (latest)" in text
    cfg = json.loads((run / "config.json").read_text())
    assert f"<th>ngf</th><td>{cfg['ngf']}</td>" in text and "<th>task</th>" in text
    assert HINT not in text
    assert not [p for p in run.rglob("*.tmp")]  # written atomically, nothing left over


def test_losses_are_grouped_by_network() -> None:
    assert {k: report.network_of(k) for k in ("G_A2B", "cycle_A", "idt_B", "adv",
                                              "perceptual", "G_L1", "D", "D_A", "D_real")} == {
        "G_A2B": "G", "cycle_A": "G", "idt_B": "G", "adv": "G", "perceptual": "G",
        "G_L1": "G", "D": "D", "D_A": "D", "D_real": "D"}


def test_log_scale_only_where_values_span_decades() -> None:
    assert charts.wants_log_scale([charts.Series("G", [1, 2, 3], [10.0, 1.0, 0.05])])
    assert not charts.wants_log_scale([charts.Series("G", [1, 2, 3], [3.0, 2.0, 0.5])])
    assert not charts.wants_log_scale([charts.Series("D", [1, 2], [-1.0, 100.0])])
    smooth = charts.ema([0.0, 10.0, 10.0, 10.0], window=3)
    assert smooth[0] == 0.0 and 0 < smooth[1] < smooth[2] < smooth[3] < 10


def test_validation_curves_and_a_cut_off_last_line(run_dir: Path, tmp_path: Path) -> None:
    """val_* keys (written at validation steps) become curves with their best value; a line
    a crash cut off is left out and counted on the page."""
    need_matplotlib()
    run = fresh_run(run_dir, tmp_path)
    with (run / "losses.jsonl").open("a") as f:
        for step, fid, psnr in ((3, 80.0, 20.5), (6, 95.0, 22.0)):
            f.write(json.dumps({"step": step, "val_fid": fid, "val_psnr": psnr}) + "\n")
        f.write('{"step": 7, "G_A2B": 0.')
    text = report.write_report(run).read_text(encoding="utf-8")
    assert (run / "report" / "val_fid.png").is_file()
    assert (run / "report" / "val_psnr.png").is_file()
    # best FID is the lowest (step 3), best PSNR the highest (step 6)
    assert ("<tr><th>val_fid</th><td class=num>95</td><td class=num>80</td>"
            "<td class=num>3</td><td>lower</td></tr>") in text
    assert ("<tr><th>val_psnr</th><td class=num>22</td><td class=num>22</td>"
            "<td class=num>6</td><td>higher</td></tr>") in text
    assert "1 unreadable line(s) in losses.jsonl" in text
    check_links(run / "report.html", run)


def test_report_without_matplotlib_says_which_extra(run_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = fresh_run(run_dir, tmp_path)
    monkeypatch.setattr(charts, "available", lambda: False)
    assert cli.main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert err.count("img2img[report]") == 1 and f"wrote {run / 'report.html'}" in out
    text = (run / "report.html").read_text(encoding="utf-8")
    assert HINT in text
    shown = check_links(run / "report.html", run)
    assert [p.parent.name for p in shown] == ["samples", "samples"]  # no charts, samples still
    assert "<th>G_A2B</th>" in text and "<th>ngf</th>" in text  # tables and configuration


def test_report_command_rejects_a_folder_that_is_not_a_run(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    (tmp_path / "photos").mkdir()
    write_png(tmp_path / "photos")
    for target in (tmp_path / "photos", tmp_path / "missing"):
        assert cli.main(["report", str(target)]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and str(target) in lines[0]
    assert not (tmp_path / "photos" / "report.html").exists()


def test_report_loads_in_the_browser_also_from_a_copy(run_dir: Path, tmp_path: Path,
                                                      browser) -> None:  # noqa: ANN001
    run = fresh_run(run_dir, tmp_path)
    page = report.write_report(run)
    count = len([t for t, _ in refs(page) if t == "img"])
    assert count >= 2
    assert_all_loaded(browser, page, count)
    copy = moved_copy(run, tmp_path / "elsewhere" / "copied run")
    assert_all_loaded(browser, copy / "report.html", count)


# --------------------------------------------------------------------------- gallery

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator("resnet_6blocks", ngf=8).eval()
    path = tmp_path_factory.mktemp("gallery_ckpt") / "G_A2B.safetensors"
    save_generator(path, net, meta_for(net, "resnet_6blocks", {"ngf": 8}, "cyclegan", "A2B"))
    return path


N_SMALL = 201


def make_inputs(folder: Path) -> Path:
    """201 tiny photos (one more than a page), a truncated PNG, a 16-bit one, one with
    alpha, and names a URL must encode (space, '#', non-ASCII)."""
    for i in range(N_SMALL):
        write_image(folder / ("sub" if i % 3 == 0 else "") / f"p{i:03d}.png",
                    photo_like(8, 8, seed=i))
    write_truncated_png(folder, "broken.png", size=(8, 8))
    write_rgb16_png(folder / "deep dir", "sixteen #1.png", size=(40, 24))
    write_rgba_png(folder, "alpha é.png", size=(20, 30))
    return folder


def translate(checkpoint: Path, src: Path, out: Path, capsys: pytest.CaptureFixture[str],
              *extra: str) -> tuple[int, str, str]:
    code = cli.translate_main(["--checkpoint", str(checkpoint), "--input", str(src),
                               "--output", str(out), "--device", "cpu", "--quiet", *extra])
    out_text, err = capsys.readouterr()
    return code, out_text, err


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def gallery_rows(page: Path) -> list[str]:
    """The output files a gallery page shows (the link beside the two thumbnails)."""
    return list(dict.fromkeys(unquote(url) for tag, url in refs(page)
                              if tag == "a" and url.endswith(".png")))


@pytest.fixture(scope="module")
def gallery(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gallery")
    src = make_inputs(root / "in")
    before = digests(src)
    code = cli.translate_main(["--checkpoint", str(checkpoint), "--input", str(src),
                               "--output", str(root / "out"), "--device", "cpu", "--quiet",
                               "--html"])
    return {"root": root, "src": src, "out": root / "out", "code": code, "before": before}


def test_gallery_pages_show_every_output_and_the_failure(gallery: dict) -> None:
    out = gallery["out"]
    assert gallery["code"] == 1  # one input failed
    assert digests(gallery["src"]) == gallery["before"]  # inputs untouched
    first, second = out / "index.html", out / "index_2.html"
    assert first.is_file() and second.is_file() and not (out / "index_3.html").exists()
    assert ("a", "index_2.html") in refs(first) and ("a", "index.html") in refs(second)
    translated = N_SMALL + 2
    rows = gallery_rows(first) + gallery_rows(second)
    assert len(gallery_rows(first)) == 200 and len(rows) == translated
    assert sorted(rows) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")
                                  if ".thumbs" not in p.parts)
    text = first.read_text(encoding="utf-8")
    assert "broken.png</b>: truncated PNG" in text
    assert f"{translated} translated image(s), 1 input(s) not translated" in text
    for page in (first, second):
        shown = check_links(page, out)
        assert all(out / ".thumbs" in p.parents for p in shown)
        assert len(shown) == 2 * len(gallery_rows(page))  # input and output, every row
    thumbs = [p for p in (out / ".thumbs").rglob("*") if p.is_file()]
    assert len(thumbs) == 2 * translated
    alpha = read_image(out / ".thumbs" / "alpha é.png.in.png")
    assert alpha.shape[2] == 4  # alpha kept, shown over a checkerboard
    deep = read_image(out / ".thumbs" / "deep dir" / "sixteen #1.png.in.jpg")
    assert deep.dtype == np.uint8 and deep.shape[:2] == (40, 24)


def test_gallery_rerun_rebuilds_the_pages_from_every_output(gallery: dict, checkpoint: Path,
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    root = Path(shutil.copytree(gallery["root"], tmp_path / "g"))
    out = root / "out"
    (out / "index_2.html").unlink()
    (out / "p001.png").unlink()  # its thumbnails must go, and it is translated again
    thumb = out / ".thumbs" / "p002.png.out.jpg"
    mtime = thumb.stat().st_mtime_ns
    code, text, _ = translate(checkpoint, root / "in", out, capsys, "--html")
    assert code == 1 and "1 translated, 202 skipped" in text and "2 pages" in text
    rows = gallery_rows(out / "index.html") + gallery_rows(out / "index_2.html")
    assert len(rows) == N_SMALL + 2 and "p001.png" in rows
    assert thumb.stat().st_mtime_ns == mtime  # unchanged output: thumbnail reused


def test_gallery_leaves_stale_pages_only_if_not_ours(gallery: dict, checkpoint: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Fewer images -> fewer pages: our index_2.html goes; a page that is not ours stays,
    and an index.html that is not ours stops the run before any work."""
    src = tmp_path / "few"
    for i in range(3):
        write_image(src / f"f{i}.png", photo_like(8, 8, seed=i))
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(gallery["out"] / "index_2.html", out / "index_2.html")
    (out / "index_3.html").write_text("<p>my own notes</p>")
    code, _, _ = translate(checkpoint, src, out, capsys, "--html")
    assert code == 0 and (out / "index.html").is_file()
    assert not (out / "index_2.html").exists() and (out / "index_3.html").is_file()
    assert ("a", "index_2.html") not in refs(out / "index.html")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<p>hand written</p>")
    code, _, err = translate(checkpoint, src, mine, capsys, "--html")
    assert code == 2 and "index.html exists and was not written by img2img" in err
    assert (mine / "index.html").read_text() == "<p>hand written</p>"
    assert not (mine / "f0.png").exists()


def test_gallery_loads_in_the_browser_also_from_a_copy(gallery: dict, tmp_path: Path,
                                                       browser) -> None:  # noqa: ANN001
    out = Path(shutil.copytree(gallery["out"], tmp_path / "out"))
    for page in (out / "index.html", out / "index_2.html"):
        assert_all_loaded(browser, page, 2 * len(gallery_rows(page)))
    copy = moved_copy(out, tmp_path / "copied elsewhere" / "out")
    for page in (copy / "index.html", copy / "index_2.html"):
        assert_all_loaded(browser, page, 2 * len(gallery_rows(page)))
