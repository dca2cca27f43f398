"""A whole ``img2img translate`` run: plan, load, translate (sharded under ``torchrun``),
combine the reports.

Under ``torchrun`` rank 0 plans the run (one plan for all: outputs appear while other ranks
would still be planning) and every rank translates its share of the file list
(``jobs[rank::world_size]``, each file exactly once); every rank gets the combined report.
Requests that are wrong (a bad flag value, no inputs, an output inside the input, a missing
or wrong checkpoint, a model the inputs cannot feed) refuse the run on every rank before any
file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from img2img import collective
from img2img.checkpoint import CheckpointError
from img2img.collective import World
from img2img.errors import UsageError
from img2img.inference import folder, writers
from img2img.inference.folder import Job, Plan, Report
from img2img.inference.frames import WriteOptions
from img2img.inference.geotiff import EXTRA_BANDS, TIFF_EXTENSIONS, GeoOptions
from img2img.inference.quantize import DEFAULT_CALIBRATE_COUNT
from img2img.inference.tile_layout import DEFAULT_OVERLAP, TileOptions
from img2img.inference.translator import Translator
from img2img.runtime import (
    INT8_PRECISION,
    default_batch_size,
    keep_freed_memory,
    resolve_device,
)

__all__ = ["REQUEST_ERRORS", "FolderOptions", "FolderRun", "RunRefused",
           "TranslationInterrupted", "check_channels", "translate_folder"]

REQUEST_ERRORS: tuple[type[Exception], ...] = (UsageError, CheckpointError, FileNotFoundError)
"""Exceptions that mean "the request is wrong" (the command line exits 2 for them)."""


@dataclass(frozen=True)
class FolderOptions:
    """What to translate and how: the flags of ``img2img translate`` (same names).

    ``batch_size`` None: ``runtime.default_batch_size`` of the device. ``tile``,
    ``tile_overlap``, ``max_pixels``: ``TileOptions``; ``bands``, ``extra_bands``,
    ``data_range``: ``GeoOptions``; ``codec``, ``crf``: ``frames.WriteOptions`` (checked when
    the run starts, like every option). ``frames_out``: a folder for the numbered frames of
    every video, instead of videos in ``output``. ``precision`` ``int8``: the generator
    quantized by ``inference.quantize``, calibrated on the first ``calibrate_count`` images of
    ``calibrate`` (a folder) or of the run itself.
    """

    checkpoint: str
    input: str
    output: str
    ext: str | None = None
    overwrite: bool = False
    key: str | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    dropout_at_test: bool = False
    per_image_norm: bool = False
    batch_size: int | None = None
    workers: int = 2
    tile: int | None = None
    tile_overlap: int = DEFAULT_OVERLAP
    max_pixels: int | None = None
    bands: tuple[int, ...] | None = None
    extra_bands: str = EXTRA_BANDS[0]
    data_range: float | None = None
    codec: str | None = None
    crf: int | None = None
    frames_out: str | None = None
    calibrate: str | None = None
    calibrate_count: int = DEFAULT_CALIBRATE_COUNT
    quiet: bool = False


@dataclass
class FolderRun:
    """What a run did, on every rank: the combined ``report``, rank 0's ``plan`` (inputs and
    outputs in input order, for galleries and metrics), this process's ``world`` and the
    ``device`` it ran on."""

    report: Report
    plan: Plan
    world: World = field(default_factory=World)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def summary(self) -> str:
        """The run's one-line summary."""
        procs = f" ({self.world.size} processes)" if self.world.distributed else ""
        return self.report.summary() + procs


class RunRefused(UsageError):
    """A wrong request, refused by every process of the run before any work. ``is_main``:
    whether this process is the one that says so (rank 0)."""

    def __init__(self, message: str, is_main: bool = True) -> None:
        super().__init__(message)
        self.is_main = is_main


class TranslationInterrupted(KeyboardInterrupt):
    """Ctrl-C during the run, raised once the files in flight were written (each output is
    complete or absent): ``report`` is what this process did, ``remaining`` how many of its
    files are not done. Running the same request again continues with them."""

    def __init__(self, report: Report, remaining: int) -> None:
        super().__init__(f"interrupted: {report.summary()}; {remaining} not done")
        self.report, self.remaining = report, remaining


def check_channels(in_channels: int, jobs: list[Job], checkpoint: str) -> None:
    """UsageError unless the inputs can feed the model: ordinary images give the network
    1 or 3 channels; other counts need GeoTIFF bands."""
    if in_channels in (1, 3):
        return
    others = [j.src for j in jobs if Path(j.src).suffix.lower() not in TIFF_EXTENSIONS]
    if others:
        raise UsageError(f"{checkpoint}: the model takes {in_channels} input channels, which "
                         f"only GeoTIFF bands can give; {others[0]} and {len(others) - 1} other "
                         f"input(s) are not TIFFs")


def translate_folder(options: FolderOptions,
                     prepare: Callable[[torch.device], None] | None = None) -> FolderRun:
    """Translate ``options.input`` (a file, folder tree or glob) into ``options.output``.

    Joins the ``torchrun`` process group when there is one (gloo: only small control
    messages travel) and leaves it before returning. ``prepare(device)`` runs on rank 0
    while planning: the place for checks that must fail before any work (an exception of
    ``REQUEST_ERRORS`` there refuses the run like a bad option). Raises RunRefused for a
    wrong request and TranslationInterrupted on Ctrl-C; files that fail are in the report.
    """
    keep_freed_memory()
    with collective.joined(resolve_device(options.device), backend="gloo") as (world, device):
        return _run(options, world, device, prepare)


def _run(options: FolderOptions, world: World, device: torch.device,
         prepare: Callable[[torch.device], None] | None) -> FolderRun:
    error, planned = None, Plan()
    quiet = options.quiet or not world.is_main
    try:
        tiling = TileOptions(options.tile, options.tile_overlap, options.max_pixels)
        geo = GeoOptions(options.bands, options.extra_bands, options.data_range)
        table = writers.configured(WriteOptions(options.codec, options.crf, options.overwrite,
                                                progress=not quiet))
        if world.is_main:
            planned = folder.plan(options.input, options.output, options.ext, options.overwrite,
                                  options.frames_out)
            if prepare is not None:
                prepare(device)
    except REQUEST_ERRORS as exc:
        error = str(exc)
    error, planned = collective.broadcast(world, (error, planned))
    translator = None
    if error is None:
        try:
            if options.precision == INT8_PRECISION or options.calibrate:
                translator = _int8_translator(options, planned, tiling, geo, device)
            else:
                translator = Translator.from_checkpoint(
                    options.checkpoint, str(device), options.precision,
                    options.dropout_at_test, compile=options.compile, key=options.key,
                    per_image_norm=options.per_image_norm)
            geo.check_model(translator.meta.in_channels)
            check_channels(translator.meta.in_channels, planned.jobs, options.checkpoint)
        except REQUEST_ERRORS as exc:
            error = str(exc)
    errors = [e for e in collective.all_gather(world, error) if e]
    if errors:
        raise RunRefused(errors[0], world.is_main)
    assert translator is not None
    mine = planned.jobs[world.rank :: world.size]
    report = Report()
    try:
        from tqdm import tqdm

        with tqdm(total=len(mine), disable=quiet, unit="img", dynamic_ncols=True) as bar:
            batch_size = options.batch_size or default_batch_size(translator.device)
            folder.translate_jobs(translator, mine, batch_size, progress=bar.update,
                                  workers=options.workers, tiling=tiling, geo=geo,
                                  report=report, writers=table)
    except KeyboardInterrupt:  # no collectives: the other ranks are being interrupted too
        raise TranslationInterrupted(report, len(mine) - len(report.done)) from None
    total = Report(skipped=list(planned.skipped), failed=list(planned.failed),
                   removed_temp=planned.removed_temp)
    for r in collective.all_gather(world, report):
        total.done += r.done
        total.skipped += r.skipped
        total.failed += r.failed
    total.failed.sort(key=lambda x: str(x[0]))
    return FolderRun(total, planned, world, device)


def _int8_translator(options: FolderOptions, planned: Plan, tiling: TileOptions,
                     geo: GeoOptions, device: torch.device) -> Translator:
    """``precision`` int8: calibrated on ``options.calibrate`` or the run's first inputs,
    GeoTIFFs with the run's bands and data range (every rank quantizes on the same inputs,
    so they share the cached model's name)."""
    from img2img.data.scan import list_images
    from img2img.inference import quantize

    if options.precision != INT8_PRECISION:
        raise UsageError(f"--calibrate: applies to --precision int8 only "
                         f"(not {options.precision})")
    if options.calibrate:
        try:
            images = list_images(options.calibrate)
        except OSError as exc:
            raise UsageError(f"--calibrate {options.calibrate}: {exc}") from None
        if not images:
            raise UsageError(f"--calibrate {options.calibrate}: no images found")
        label = f"--calibrate {options.calibrate}"
    else:
        images, label = [Path(src) for src, _ in planned.pairs], f"--input {options.input}"
    quantize.check_request(device, options.dropout_at_test, options.compile,
                           options.per_image_norm)
    return quantize.int8_translator(options.checkpoint, options.output, images,
                                    options.calibrate_count, tiling, options.key, label,
                                    geo=geo)
