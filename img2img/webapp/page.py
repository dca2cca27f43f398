"""The Gradio page: upload, model (and direction), input|output slider, full-size download.

Only this module (and ``launch``'s caller) imports Gradio. Every translation runs through
one queue slot (``concurrency_id`` shared by the upload and the button, limit 1) and a lock,
so two requests never run a model at once. Every failure reaches the page as one line
(``gr.Error``), never a traceback.
"""

from __future__ import annotations

import html
import logging
import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from img2img.checkpoint import CheckpointError
from img2img.data.io import ImageIOError
from img2img.data.scan import TRANSLATABLE_EXTENSIONS
from img2img.errors import UsageError
from img2img.inference.tile_layout import TileOptions
from img2img.webapp.models import DIRECTION_LABELS, ModelEntry
from img2img.webapp.work import run_request

log = logging.getLogger("img2img")

API_NAME = "translate"
KEEP_REQUESTS = 4  # request folders kept on disk (Gradio copies results into its cache)
INTRO = ("Upload or drop an image (PNG, JPEG, TIFF, WebP, BMP, GIF; alpha and 16-bit samples "
         "are kept). Large images are translated in tiles. The slider compares input and output; "
         "the result below is the full-size file.")


class _RequestFolders:
    """A fresh folder per request under one temp folder; only the last few are kept."""

    def __init__(self, keep: int = KEEP_REQUESTS) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="img2img-app-"))
        self.keep = keep
        self.recent: deque[Path] = deque()

    def new(self) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.root))
        self.recent.append(folder)
        while len(self.recent) > self.keep:
            shutil.rmtree(self.recent.popleft(), ignore_errors=True)
        return folder


def page_error(message: str) -> gr.Error:
    """A one-line error for the page (its modal renders HTML, so the text is escaped)."""
    line = " ".join(str(message).split()) or "unknown error"
    return gr.Error(html.escape(line, quote=False), print_exception=False)


def _radio(entry: ModelEntry, all_directions: Sequence[str] | None = None) -> dict[str, Any]:
    directions = all_directions or entry.directions
    return {"choices": [(DIRECTION_LABELS.get(d, d), d) for d in directions],
            "value": entry.directions[0], "visible": len(entry.directions) > 1}


def build_app(entries: Sequence[ModelEntry], tiling: TileOptions | None = None,
              batch_size: int = 1, debug: bool = False) -> gr.Blocks:
    """The app's page for these models (launch it with :func:`launch`). ``tiling`` and
    ``batch_size`` (tiles run together) as in ``translate``; ``debug`` logs the traceback
    of an unexpected error on the server's console (the page always gets one line)."""
    if not entries:
        raise UsageError("the app needs at least one model")
    tiling = tiling or TileOptions()
    by_label = {e.label: e for e in entries}
    every_direction = [d for d in ("A2B", "B2A") if any(d in e.translators for e in entries)]
    every_direction += sorted({d for e in entries for d in e.directions} - set(every_direction))
    folders = _RequestFolders()
    lock = threading.Lock()

    def translate(upload: str | None, label: str, direction: str | None,
                  progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's way
        if not upload:
            raise page_error("upload an image first")
        entry = by_label.get(label)
        if entry is None:
            raise page_error(f"no model named {label!r}")

        def tiles(done: int, total: int) -> None:
            progress((done, total), desc="translating tiles", unit="tiles")

        try:
            translator, path = entry.pick(direction)
            with lock:
                result = run_request(upload, translator, path, tiling, folders.new(),
                                     batch_size, tiles)
        except (ImageIOError, UsageError, CheckpointError) as exc:
            raise page_error(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the page gets one line, never a traceback
            log.error("translation failed: %s: %s", type(exc).__name__, exc,
                      exc_info=debug)
            raise page_error(f"translation failed: {type(exc).__name__}: {exc}") from None
        log.info("%s with %s: %s", Path(upload).name, path.name, result.summary())
        return ((str(result.preview_input), str(result.preview_output)), str(result.download),
                result.summary())

    def pick_model(label: str) -> gr.Radio:
        entry = by_label.get(label, entries[0])
        return gr.Radio(**_radio(entry))

    with gr.Blocks(title="img2img", analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## img2img\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image", type="filepath", file_count="single",
                                 file_types=sorted(TRANSLATABLE_EXTENSIONS), elem_id="upload")
                model = gr.Dropdown([e.label for e in entries], value=entries[0].label,
                                    label="Model", elem_id="model")
                direction = gr.Radio(label="Direction", elem_id="direction",
                                     **_radio(entries[0], every_direction))
                button = gr.Button("Translate", variant="primary", elem_id="run")
                info = gr.Markdown(elem_id="info")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Input | output", type="filepath",
                                        interactive=False, elem_id="slider")
                download = gr.File(label="Result (full size)", interactive=False,
                                   elem_id="download")
        model.change(pick_model, model, direction, queue=False, api_name="on_model",
                     api_visibility="private")
        run = {"fn": translate, "inputs": [upload, model, direction],
               "outputs": [slider, download, info], "concurrency_limit": 1,
               "concurrency_id": "model"}
        upload.upload(**run, api_name="on_upload", api_visibility="undocumented")
        button.click(**run, api_name=API_NAME)
    demo.queue(default_concurrency_limit=1)
    weakref.finalize(demo, shutil.rmtree, folders.root, ignore_errors=True)
    return demo


def theme() -> gr.themes.Base:
    """The default theme with the system's fonts (no request to a font service)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860,
           share: bool = False, quiet: bool = False) -> str:
    """Start the server without blocking; returns the local URL."""
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share,
                            prevent_thread_lock=True, quiet=quiet, ssr_mode=False,
                            inbrowser=False, theme=theme(), footer_links=["api"])
    return url
