"""Make test helper modules (``imgfactory``) importable from every test file."""

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


import os  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from functools import partial  # noqa: E402
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():  # noqa: ANN201 - generator fixture
    """Run a module's tests with one torch thread, restoring the setting afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def pixel_limit(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - generator fixture
    """``data.io.set_max_image_pixels``, with the limit (and its environment variable)
    restored after the test (``--max-image-pixels`` sets them for the whole process)."""
    from img2img.data import io as imgio

    saved = imgio.max_image_pixels()
    monkeypatch.delenv(imgio.MAX_IMAGE_PIXELS_ENV, raising=False)
    yield imgio.set_max_image_pixels
    imgio.set_max_image_pixels(saved)  # the environment is restored by monkeypatch after this


@pytest.fixture(scope="session", autouse=True)
def cpu_flags_unknown():  # noqa: ANN201 - generator fixture
    """Run every test as on a CPU whose flags are unknown, so that ``--precision auto`` (the
    default of ``train`` and ``translate``) picks fp32 on any machine and results do not
    depend on the CPU running the tests (subprocesses inherit it). Tests of the choice set
    ``IMG2IMG_CPU_FLAGS`` themselves."""
    from img2img.runtime import CPU_FLAGS_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CPU_FLAGS_ENV, "")
        yield


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


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - generator fixture
    """Headless Debian Chromium driven by its own chromedriver (Selenium Manager is never
    asked to find or download one). Skipped where absent, but required under CI."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not chromium or not driver_path:
        missing = "selenium (pip install -e '.[dev]')" if webdriver is None else \
            "chromium and chromedriver (tools/ci_browser.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need {missing}")
        pytest.skip(f"needs {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
