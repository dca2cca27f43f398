"""``img2img app``: the Gradio page, driven as a user would -- through ``gradio_client`` and
in a real browser (headless Debian Chromium; see tools/ci_browser.sh).

The app runs in this process on a free localhost port. Its results must equal what
``Translator`` gives for the same file (same precision: exactly), keep 16-bit samples and
alpha, and every bad request must reach the page as one line, never a traceback. The
browser test's screenshot goes to ``$IMG2IMG_TEST_ARTIFACTS`` (default: its tmp_path).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like, write_png, write_rgb16_png, write_rgba_png

from img2img.checkpoint import meta_for, save_generator
from img2img.data.io import read_image
from img2img.inference import tile_layout
from img2img.inference.tile_layout import TileOptions
from img2img.inference.translator import Translator
from img2img.nn import build_generator
from img2img.webapp import command
from img2img.webapp.models import load_entries
from img2img.webapp.work import translate_image

try:
    import gradio  # noqa: F401
except ImportError:  # skipped without the extra, but required under CI
    if os.environ.get("CI"):
        raise
    pytest.skip("needs pip install 'img2img[app]'", allow_module_level=True)
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from img2img.webapp import page  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def save(path: Path, arch: str, kwargs: dict, task: str, direction: str = "A2B",
         seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = build_generator(arch, **kwargs).eval()
    save_generator(path, net, meta_for(net, arch, kwargs, task, direction))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CycleGAN run folder (G_A2B + G_B2A, ngf 8), an x2 upscaler and a 4-band model."""
    root = tmp_path_factory.mktemp("models")
    tiny = {"ngf": 8}
    return {
        "run": root / "run",
        "A2B": save(root / "run" / "G_A2B.safetensors", "resnet_6blocks", tiny, "cyclegan"),
        "B2A": save(root / "run" / "G_B2A.safetensors", "resnet_6blocks", tiny, "cyclegan",
                    "B2A", seed=1),
        "sr": save(root / "sr" / "x2.safetensors", "srresnet",
                   {"scale": 2, "channels": 8, "n_blocks": 1}, "srgan"),
        "bands": save(root / "bands" / "four.safetensors", "resnet_6blocks",
                      {"ngf": 8, "in_channels": 4, "out_channels": 4}, "cyclegan"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """40x24 RGB, RGBA and 16-bit RGB PNGs, a 48x40 one for tiling, and a text file."""
    root = tmp_path_factory.mktemp("uploads")
    notes = root / "notes.png"
    notes.write_text("not an image\n")
    return {"rgb": write_png(root, "rgb.png", size=(24, 40)).path,
            "rgba": write_rgba_png(root, "alpha.png", size=(24, 40)).path,
            "rgb16": write_rgb16_png(root, "deep.png", size=(24, 40)).path,
            "big": write_png(root, "big.png", size=(40, 48), seed=3).path,
            "notes": notes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(models: dict[str, Path], tmp: Path, **kwargs) -> Iterator[tuple[str, list, Client]]:
    entries = load_entries([models["run"], models["sr"], models["bands"]], "cpu")
    demo = page.build_app(entries, **kwargs)
    url = page.launch(demo, port=free_port(), quiet=True)
    try:
        yield url, entries, Client(url, verbose=False, download_files=str(tmp))
    finally:
        demo.close(verbose=False)


@pytest.fixture(scope="module")
def app(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """(url, model entries, client) of the app with its defaults, on 127.0.0.1."""
    yield from start(models, tmp_path_factory.mktemp("client"))


def call(client: Client, image: Path, label: str, direction: str = "A2B") -> tuple:
    return client.predict(handle_file(str(image)), label, direction, api_name="/translate")


def test_models_pair_a_cyclegan_run_and_list_the_others(app: tuple, models: dict) -> None:
    _, entries, _ = app
    labels = [e.label for e in entries]
    assert labels == ["run/G_A2B + G_B2A.safetensors (cyclegan)", "sr/x2.safetensors (srgan x2)",
                      "bands/four.safetensors (cyclegan A2B)"]
    assert entries[0].paths == {"A2B": models["A2B"], "B2A": models["B2A"]}
    assert entries[1].directions == ["A2B"]


@pytest.mark.parametrize("kind", ["rgb", "rgba", "rgb16"])
@pytest.mark.parametrize("direction", ["A2B", "B2A"])
def test_result_equals_the_translator_in_the_input_depth_and_alpha(
        app: tuple, models: dict, images: dict, kind: str, direction: str) -> None:
    url, entries, client = app
    assert url.startswith("http://127.0.0.1:")
    (before, after), download, info = call(client, images[kind], entries[0].label, direction)
    src = read_image(images[kind])
    want = Translator.from_checkpoint(models[direction], "cpu", "fp32")(src)
    got = read_image(download)
    assert Path(download).name == f"{images[kind].stem}_G_{direction}.png"
    assert got.dtype == src.dtype and got.shape == src.shape == (24, 40, src.shape[2])
    assert np.array_equal(got, want)
    if kind == "rgba":
        assert np.array_equal(got[:, :, 3], src[:, :, 3])
    assert read_image(before).shape[:2] == read_image(after).shape[:2] == (24, 40)
    assert info.startswith("40x24 ")


def test_an_upscaler_gives_the_full_size_and_equal_previews(app: tuple, models: dict,
                                                            images: dict) -> None:
    _, entries, client = app
    (before, after), download, _ = call(client, images["rgb"], entries[1].label)
    want = Translator.from_checkpoint(models["sr"], "cpu", "fp32")(read_image(images["rgb"]))
    assert np.array_equal(read_image(download), want) and want.shape == (48, 80, 3)
    assert read_image(before).shape == read_image(after).shape == (48, 80, 3)


def test_bad_requests_are_one_line_in_the_page(app: tuple, images: dict, pixel_limit) -> None:  # noqa: ANN001
    _, entries, client = app

    def error(image: Path, label: str) -> str:
        with pytest.raises(AppError) as info:
            call(client, image, label)
        text = str(info.value)
        assert "Traceback" not in text and "\n" not in text, text
        return text

    assert error(images["notes"], entries[0].label).startswith("notes.png: not an image file")
    assert "the model takes 4 input channels" in error(images["rgb"], entries[2].label)
    pixel_limit(500)
    text = error(images["rgb"], entries[0].label)
    assert text.startswith("rgb.png: 40x24 = 960 pixels is more than the limit of 500 pixels")


def test_two_requests_never_run_a_model_at_once(app: tuple, images: dict) -> None:
    _, entries, client = app
    net = entries[0].translators["A2B"].model
    active, most = [0], [0]

    def enter(*_: object) -> None:
        active[0] += 1
        most[0] = max(most[0], active[0])
        time.sleep(0.3)

    def leave(*_: object) -> None:
        active[0] -= 1

    hooks = [net.register_forward_pre_hook(enter), net.register_forward_hook(leave)]
    try:
        jobs = [client.submit(handle_file(str(images["rgb"])), entries[0].label, "A2B",
                              api_name=name)  # the upload runs it too, then the button
                for name in ("/on_upload", "/translate", "/translate")]
        results = [job.result(timeout=60) for job in jobs]
    finally:
        for h in hooks:
            h.remove()
    assert len(results) == 3 and most[0] == 1


def test_large_inputs_are_tiled_as_translate_tiles_them(models: dict, images: dict,
                                                        tmp_path: Path) -> None:
    for _, entries, client in start(models, tmp_path, tiling=TileOptions(tile=16, overlap=8)):
        _, download, info = call(client, images["big"], entries[0].label)
        translator = Translator.from_checkpoint(models["A2B"], "cpu", "fp32")
        want = translator.translate_tiled(read_image(images["big"]), 16, 8, batch_size=1)
        assert np.array_equal(read_image(download), want)
        assert ", 9 tiles," in info


def test_tile_progress_counts_up_to_every_tile(models: dict) -> None:
    translator = Translator.from_checkpoint(models["A2B"], "cpu", "fp32")
    seen: list[tuple[int, int]] = []
    out, tiles = translate_image(translator, photo_like(40, 48), TileOptions(tile=16, overlap=8),
                                 progress=lambda done, total: seen.append((done, total)))
    assert tiles == 9 and seen == [(i, 9) for i in range(10)] and out.shape == (40, 48, 3)


def test_localhost_by_default_and_a_warning_for_anything_wider(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    ns = command.parser().parse_args(["--checkpoint", "x"])
    assert (ns.host, ns.port, ns.share) == ("127.0.0.1", 7860, False)
    assert command.DEFAULT_OVERLAP == tile_layout.DEFAULT_OVERLAP
    assert command.exposure_warnings("127.0.0.1", False) == []
    assert command.exposure_warnings("localhost", False) == []
    code = command.main(["--checkpoint", str(tmp_path / "missing.safetensors"),
                         "--host", "0.0.0.0", "--share", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0].startswith("warning: --host 0.0.0.0: the app is reachable from other machines")
    assert err[1].startswith("warning: --share: the app is published through a public")
    missing = tmp_path / "missing.safetensors"
    assert err[2] == f"error: --checkpoint {missing}: no such file or folder"


def test_without_gradio_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert command.main(["--checkpoint", "x", "--quiet"]) == 2
    assert capsys.readouterr().err == \
        "error: img2img app needs Gradio: pip install 'img2img[app]'\n"


def test_a_port_in_use_is_one_line(models: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = command.main(["--checkpoint", str(models["A2B"]), "--port", str(port),
                             "--device", "cpu", "--quiet"])
    assert code == 2
    assert capsys.readouterr().err == (f"error: --port {port}: cannot listen on 127.0.0.1:{port} "
                                       f"(another server may be using it); choose another --port\n")


def test_the_command_serves_until_ctrl_c(models: dict) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C as from a terminal: a suite started in the background (``pytest &``) has SIGINT
    # ignored, which its children would inherit, so the server gets the default back
    proc = subprocess.Popen([sys.executable, "-m", "img2img.webapp", "--checkpoint",
                             str(models["run"]), "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    try:
        reader.join(60)
        line = first[0] if first else ""
        assert line.startswith(f"img2img app: http://127.0.0.1:{port}/ (1 model(s))"), line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200 and b"img2img" in r.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "warning" not in err and "Traceback" not in err


def test_upload_in_the_browser_shows_input_and_output(app: tuple, images: dict, browser,  # noqa: ANN001
                                                      tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = app
    browser.set_window_size(1280, 900)
    browser.get(url)
    upload = WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
    upload.send_keys(str(images["rgb16"]))

    def shown(d) -> list | bool:  # noqa: ANN001
        imgs = d.execute_script("return Array.from(document.querySelectorAll('#slider img'))"
                                ".map(i => [i.naturalWidth, i.naturalHeight])")
        return imgs if len(imgs) == 2 and all(w > 0 for w, _ in imgs) else False

    sizes = WebDriverWait(browser, 60).until(shown)
    download = WebDriverWait(browser, 10).until(  # the name is shown in two parts
        lambda d: "deep_G_A2B.png" in "".join(d.find_element(By.ID, "download").text.split()))
    artifacts = Path(os.environ.get("IMG2IMG_TEST_ARTIFACTS") or tmp_path)
    shot = artifacts / "webapp_upload.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot))
    assert sizes == [[40, 24], [40, 24]] and download
    assert "40x24 RGB 16-bit" in browser.find_element(By.ID, "info").text

    def radio_shown(d) -> bool:  # noqa: ANN001
        return d.execute_script("const e = document.getElementById('direction');"
                                "return !!e && e.offsetParent !== null")

    assert radio_shown(browser)  # the CycleGAN pair offers both directions
    browser.find_element(By.CSS_SELECTOR, "#model input").click()
    options = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "ul[role=listbox] li"))
    options[1].click()  # the x2 upscaler
    WebDriverWait(browser, 10).until(lambda d: not radio_shown(d))
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 60).until(lambda d: shown(d) == [[80, 48], [80, 48]])
    assert read_image(shot).shape[1] == 1280  # the page as the test saw it


def test_a_bundled_model_name_is_a_checkpoint(tmp_path: Path) -> None:
    """``img2img app --checkpoint sr_x4_naip`` serves the model inside the package, as
    ``translate`` does; an unknown bare name is one usage error listing the bundled ones."""
    from img2img.errors import UsageError
    from img2img.webapp.models import checkpoint_files

    [(path, named)] = checkpoint_files(["sr_x4_naip"])
    assert named and path.name == "sr_x4_naip.safetensors" and path.is_file()
    with pytest.raises(UsageError, match="bundled: sr_x4_naip"):
        checkpoint_files(["sr_x4_nap"])
