"""Readers and writers are table entries: a new kind of input (a stream of frames) and of
output plug into folder translation without touching it; the writer table picks streamed
outputs for tiled results; the library call behind ``img2img translate``; the value
conversions with a data range."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.checkpoint import meta_for, save_generator
from img2img.data.convert import from_tensor, to_tensor
from img2img.data.io import read_image, write_image
from img2img.errors import UsageError
from img2img.inference import readers, writers
from img2img.inference.folder import plan, translate_jobs
from img2img.inference.frames import Frame, Output
from img2img.inference.geotiff import rasterio_available
from img2img.inference.run import FolderOptions, RunRefused, translate_folder
from img2img.inference.translator import Translator
from img2img.nn import build_generator

ARCH, KWARGS = "resnet_6blocks", {"ngf": 8}
FRAME_H = 12  # a "strip" input holds frames of this height stacked vertically

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = build_generator(ARCH, **KWARGS).eval()
    path = tmp_path_factory.mktemp("ckpt") / "G.safetensors"
    save_generator(path, net, meta_for(net, ARCH, KWARGS, "cyclegan", "A2B"))
    return path


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


class StripReader:
    """A stream reader: a ``*.strip.png`` holds frames stacked vertically; they are yielded
    one at a time, lazily, and counted."""

    stream = True
    kind = None  # outputs named like an image's (--ext applies); frames say "strip"

    def __init__(self) -> None:
        self.pulled = 0

    def claims(self, path: Path) -> bool:
        return path.name.endswith(".strip.png")

    def frames(self, path: Path) -> Iterator[Frame]:
        strip = read_image(path)
        for i in range(strip.shape[0] // FRAME_H):
            self.pulled += 1
            yield Frame(path, np.ascontiguousarray(strip[i * FRAME_H : (i + 1) * FRAME_H]),
                        index=i, kind="strip", stream={"frames": strip.shape[0] // FRAME_H})


class StripWriter:
    """A streaming writer for ``"strip"`` outputs: stacks the frames back into one PNG,
    recording how far ahead of it the reader was for each frame."""

    streams = True
    suffixes = frozenset({".png"})

    def __init__(self, reader: StripReader) -> None:
        self.reader = reader
        self.ahead: list[int] = []
        self.indices: list[int] = []

    def available(self) -> bool:
        return True

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        return None if dst.suffix == ".png" else "strips are written as PNG"

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        parts = []
        for i, out in enumerate(outputs):
            self.ahead.append(self.reader.pulled - i)
            self.indices.append(out.frame.index)
            parts.append(out.whole())
        write_image(dst, np.concatenate(parts))


def test_a_stream_reader_and_writer_are_two_table_entries(
        monkeypatch: pytest.MonkeyPatch, translator: Translator, tmp_path: Path) -> None:
    reader = StripReader()
    writer = StripWriter(reader)
    monkeypatch.setattr(readers, "READERS", {"strip": reader, **readers.READERS})  # first
    monkeypatch.setitem(writers.WRITERS, "strip", writer)
    src = tmp_path / "in"
    strip = photo_like(FRAME_H * 7, 20, seed=3)
    write_image(src / "clip.strip.png", strip)
    write_image(src / "still.png", photo_like(16, 16, seed=4))
    calls: list[int] = []
    real = Translator.translate_arrays

    def counted(self: Translator, images: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Translator, "translate_arrays", counted)
    report = translate_jobs(translator, plan(str(src), tmp_path / "out").jobs, batch_size=3)
    assert not report.failed and len(report.done) == 2
    assert writer.indices == list(range(7)), "frames reach the writer in order"
    assert sorted(calls) == [1, 1, 3, 3], "the stream's frames run in batches of 3 (+ 1)"
    assert max(writer.ahead) <= 3 + 1, "the reader stays at most a batch ahead (bounded memory)"
    got = read_image(tmp_path / "out" / "clip.strip.png")
    frames = [strip[i * FRAME_H : (i + 1) * FRAME_H] for i in range(7)]
    want = np.concatenate([translator(f) for f in frames])
    assert got.shape == strip.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert read_image(tmp_path / "out" / "still.png").shape == (16, 16, 3)


def test_a_writer_that_refuses_an_output_is_a_reported_failure(
        monkeypatch: pytest.MonkeyPatch, translator: Translator, tmp_path: Path) -> None:
    reader = StripReader()
    monkeypatch.setattr(readers, "READERS", {"strip": reader, **readers.READERS})
    monkeypatch.setitem(writers.WRITERS, "strip", StripWriter(reader))
    write_image(tmp_path / "in" / "clip.strip.png", photo_like(FRAME_H * 2, 8, seed=5))
    report = translate_jobs(translator, plan(str(tmp_path / "in"), tmp_path / "out",
                                             ext="jpg").jobs)
    assert report.failed == [(tmp_path / "in" / "clip.strip.png", "strips are written as PNG")]
    assert not (tmp_path / "out").exists()


def test_planning_accepts_the_suffixes_of_every_writer(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "a.png", photo_like(8, 8))
    with pytest.raises(UsageError, match="--ext seq: cannot write that format"):
        plan(str(tmp_path / "in"), tmp_path / "out", ext="seq")

    class SeqWriter(StripWriter):
        suffixes = frozenset({".seq"})

    monkeypatch.setitem(writers.WRITERS, "seq", SeqWriter(StripReader()))
    assert [j.dst.name for j in plan(str(tmp_path / "in"), tmp_path / "out",
                                     ext="seq").jobs] == ["a.seq"]


def test_tiled_outputs_are_streamed_where_the_suffix_allows() -> None:
    frame = Frame(Path("a.png"), np.zeros((4, 4, 3), np.uint8))
    kind = writers.output_kind
    assert kind(frame, Path("o.png"), tiled=True) == "png-stream"
    assert kind(frame, Path("o.PNG"), tiled=True) == "png-stream"
    assert kind(frame, Path("o.jpg"), tiled=True) == "image"
    assert kind(frame, Path("o.png"), tiled=False) == "image"
    tiff = "tiff-stream" if rasterio_available() else "image"
    assert kind(frame, Path("o.tif"), tiled=True) == tiff
    assert kind(Frame(Path("g.tif"), kind="geotiff"), Path("o.tif"), tiled=False) == "geotiff"
    refusal = writers.WRITERS["geotiff"].refuses(Frame(Path("g.tif"), kind="geotiff"),
                                                 Path("o.png"))
    assert refusal is not None and "needs a .tif output" in refusal


def test_tiff_stream_falls_back_to_whole_images_without_rasterio(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)
    frame = Frame(Path("a.png"), np.zeros((4, 4, 3), np.uint8))
    assert writers.output_kind(frame, Path("o.tif"), tiled=True) == "image"


def test_translate_folder_is_the_whole_run(checkpoint: Path, translator: Translator,
                                           tmp_path: Path) -> None:
    src = tmp_path / "in"
    img = photo_like(20, 24, seed=6)
    write_image(src / "sub" / "a.png", img)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    options = FolderOptions(str(checkpoint), str(src), str(tmp_path / "out"), device="cpu",
                            precision="fp32", quiet=True)
    run = translate_folder(options)
    assert run.report.done == [tmp_path / "out" / "sub" / "a.png"]
    assert [p.name for p, _ in run.report.failed] == ["bad.png"]
    assert run.summary() == "1 translated, 0 skipped (output exists), 1 failed"
    assert [d for _, d in run.plan.pairs] == [tmp_path / "out" / "bad.png",
                                              tmp_path / "out" / "sub" / "a.png"]
    assert np.array_equal(read_image(tmp_path / "out" / "sub" / "a.png"), translator(img))
    again = translate_folder(options)
    assert again.summary() == "0 translated, 1 skipped (output exists), 1 failed"


@pytest.mark.parametrize("change, needle", [({"tile": 0}, "tile size must be positive"),
                                            ({"input": "nowhere"}, "no input images"),
                                            ({"checkpoint": "nope.safetensors"}, "nope")])
def test_translate_folder_refuses_a_wrong_request_before_any_work(
        checkpoint: Path, tmp_path: Path, change: dict, needle: str) -> None:
    write_image(tmp_path / "in" / "a.png", photo_like(8, 8))
    args = {"checkpoint": str(checkpoint), "input": str(tmp_path / "in"),
            "output": str(tmp_path / "out"), "device": "cpu", "quiet": True, **change}
    if args["input"] == "nowhere":
        args["input"] = str(tmp_path / "nowhere")
    with pytest.raises(RunRefused, match=needle) as info:
        translate_folder(FolderOptions(**args))
    assert info.value.is_main
    assert not (tmp_path / "out").exists()


def test_data_range_round_trips_12_bit_samples() -> None:
    x = np.arange(0, 4096, dtype=np.uint16).reshape(64, 64, 1)
    t = to_tensor(x, data_range=4095)
    assert t.shape == (1, 64, 64) and float(t.min()) == -1.0 and float(t.max()) == 1.0
    assert np.array_equal(from_tensor(t, np.uint16, data_range=4095), x)
    above = to_tensor(np.full((1, 1, 1), 5000, np.uint16), data_range=4095)
    assert float(above) == 1.0, "samples above the data range are clipped to it"
