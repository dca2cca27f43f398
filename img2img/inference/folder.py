"""Translate a file, a folder tree or a glob into an output folder.

Guarantees: outputs mirror the input's relative tree; existing outputs are skipped unless
``overwrite`` (so a rerun after a crash finishes the job); every write is atomic; inputs
are never modified and nothing is written outside the output folder, links included: a
destination that resolves elsewhere (a symlinked subfolder of the output, or an output
file that is itself a link) is checked when planning and again just before writing, and
is a reported failure (``img2img.data.paths``). Every input that is not translated is
reported with its reason while the rest are still translated:

* unreadable or corrupt files (the reader's reason);
* in a folder, files with an image-like suffix the toolkit does not read (HEIC, AVIF,
  JPEG 2000, ...: ``scan.OTHER_IMAGE_EXTENSIONS``) and broken symbolic links with an image
  suffix; for a glob, every match that is not translated (other suffixes included);
* animated GIF/PNG/WebP (``animated GIF: not supported``) and multi-page TIFFs (with the
  page count; reduced-resolution subfiles and masks are not pages): only their first frame
  could be read, so they are not translated at all;
* a still GIF is translated, but GIF cannot be written: without ``ext`` it is reported
  with a hint to pass ``--ext``. An ``ext`` that cannot be written is a UsageError before
  any work.

Planning also removes the temp files a killed run left in the output tree (our exact
``.NAME.<8 hex>.tmp`` names only, never through links, never one a running writer holds);
the report counts them.

Each input is read by the first reader of ``readers.READERS`` that claims it, and each
output written by the writer ``writers.WRITERS`` holds for its output kind. Reading/decoding
and encoding/writing run in background threads so that the model computes while the previous
batch is written and the next one is read.

Large images (more input pixels than ``TileOptions.limit``, or any image with
``TileOptions.tile``) are not batched with others: they run one at a time in overlapping
tiles (``tiling``), streamed into a PNG, or into a TIFF window by window through rasterio
when it is installed. Georeferenced TIFFs are read and written by windows (``geotiff``,
georeferencing kept) and need a TIFF output. A stream's frames (e.g. a video's) are
translated in batches as its writer takes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path

from img2img.data.io import ImageReadError, dropped_frames_reason
from img2img.data.paths import (
    OutsideError,
    check_clear_of_inputs,
    check_inside,
    check_output_folder,
    outside_reason,
    remove_stale_temps,
)
from img2img.data.scan import scan_inputs
from img2img.errors import UsageError
from img2img.inference.frames import Frame, Output
from img2img.inference.geotiff import GeoOptions, GeoTiffError
from img2img.inference.readers import reader_for
from img2img.inference.render import Renderer
from img2img.inference.tile_layout import TileOptions
from img2img.inference.translator import Translator
from img2img.inference.writers import WRITERS, Writer, output_kind, writable_suffixes


@dataclass
class Job:
    """One input file and where its output goes; ``out`` is the output folder that ``dst``
    must still resolve inside when it is written (None: not checked)."""

    src: Path
    dst: Path
    out: Path | None = None


@dataclass
class Plan:
    """What :func:`plan` found: jobs to run, outputs already present (skipped), inputs that
    will not be translated with the reason, the leftover temp files it removed, and
    (input, output) of every job and skipped output in input order (for the gallery)."""

    jobs: list[Job] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    removed_temp: int = 0
    pairs: list[tuple[Path, Path]] = field(default_factory=list)


@dataclass
class Report:
    """What a folder run did."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    removed_temp: int = 0

    def summary(self) -> str:
        """One line for the end of the run."""
        line = (f"{len(self.done)} translated, {len(self.skipped)} skipped (output exists), "
                f"{len(self.failed)} failed")
        if self.removed_temp:
            s = "" if self.removed_temp == 1 else "s"
            line += f", removed {self.removed_temp} leftover temp file{s}"
        return line


def _writes() -> str:
    return ", ".join(e[1:] for e in sorted(writable_suffixes()))


def _output_ext(ext: str | None) -> str | None:
    """``"PNG"``/``".png"`` -> ``".png"``; UsageError for a format no writer can write."""
    if ext is None:
        return None
    norm = (ext if ext.startswith(".") else "." + ext).lower()
    if norm not in writable_suffixes():
        raise UsageError(f"--ext {ext}: cannot write that format (use one of {_writes()})")
    return norm


def _unwritable(src: Path, dst: Path) -> str | None:
    """Why ``dst`` (the input's own format, no --ext) cannot be written; None if it can."""
    if dst.suffix.lower() in writable_suffixes():
        return None
    # An animated GIF would fail anyway: say that first rather than ask for --ext.
    return dropped_frames_reason(src) or (
        f"cannot write {dst.suffix or 'files without a suffix'} output (the input's format); "
        f"pass --ext with one of {_writes()}")


def plan(input_spec: str, output: str | Path, ext: str | None = None,
         overwrite: bool = False) -> Plan:
    """Jobs to run and outputs already present (skipped), after all safety checks.

    Raises UsageError for a bad request (before anything is read or written): an ``ext``
    that cannot be written, no inputs, an output inside the input or over an input file,
    two inputs with one output. Inputs that cannot be translated are in ``Plan.failed``.
    """
    ext = _output_ext(ext)
    found = scan_inputs(input_spec)
    if not found.files and not found.rejected:
        raise UsageError(f"{input_spec}: no input images found")
    out = Path(output).resolve()
    in_path = Path(input_spec)
    # Outputs below a folder input, or below the base of a recursive ('**') glob, would be
    # listed as inputs by the next run (a fixed-depth glob cannot match them).
    recursive_glob = found.base is not None and not in_path.is_file() and "**" in in_path.parts
    root = in_path if in_path.is_dir() else found.base if recursive_glob else None
    check_clear_of_inputs(output, [(root, f"--input {input_spec}")] if root else [])
    check_output_folder(output)
    result = Plan(failed=list(found.rejected))
    planned: list[tuple[Path, Path]] = []
    sources: dict[Path, Path] = {}
    # abspath, not resolve: a symlinked input must keep its place in the tree
    base = Path(os.path.abspath(found.base or "."))
    for f in found.files:
        rel = Path(os.path.abspath(f)).relative_to(base)
        dst = out / (rel.with_suffix(ext) if ext else rel)
        reason = (None if ext else _unwritable(f, dst)) or outside_reason(dst, out)
        if reason is not None:
            result.failed.append((f, reason))
            continue
        other = sources.setdefault(dst, f)
        if other != f:  # e.g. a.jpg and a.png with --ext png
            raise UsageError(f"{other} and {f} would both be written to {dst} (--ext {ext}); "
                             f"translate them in separate runs or keep the input formats")
        planned.append((f, dst))
    check_clear_of_inputs(out, files=found.files, destinations=[d for _, d in planned])
    result.pairs = planned
    for f, dst in planned:
        if dst.exists() and not overwrite:
            result.skipped.append(dst)
        else:
            result.jobs.append(Job(f, dst, out))
    if out.is_dir():
        result.removed_temp = remove_stale_temps(out)
    result.failed.sort(key=lambda x: str(x[0]))
    return result


@dataclass
class _Loaded:
    """A read result: the first frame (decoded, or a raster left on disk) and, for a
    stream, the iterator of the rest; or why the input cannot be read."""

    job: Job
    frame: Frame | None = None
    rest: Iterator[Frame] | None = None
    error: str | None = None


def _load(job: Job) -> _Loaded:
    """Read ``job.src`` with its reader, unless the file holds several frames or pages an
    image reader would keep only one of."""
    reason = dropped_frames_reason(job.src)
    if reason:
        return _Loaded(job, error=reason)
    try:
        reader = reader_for(job.src)
        frames = iter(reader.frames(job.src))
        first = next(frames, None)
        if first is None:
            return _Loaded(job, error="no frames to translate")
        return _Loaded(job, first, frames if reader.stream else None)
    except ImageReadError as exc:
        return _Loaded(job, error=exc.reason)
    except (GeoTiffError, OSError) as exc:
        return _Loaded(job, error=str(exc))


def _alone(item: _Loaded, renderer: Renderer) -> bool:
    """Whether ``item`` runs on its own rather than in a batch of whole images."""
    frame = item.frame
    assert frame is not None
    return (item.rest is not None or frame.kind is not None or frame.pixels is None
            or renderer.tile_for(frame) is not None)


def _work(reads: Iterator[Future], batch_size: int, report: Report,
          progress: Callable[[int], None],
          alone: Callable[[_Loaded], bool]) -> Iterator[tuple[str, list[_Loaded]]]:
    """Group consecutive readable images of equal shape into batches (``"batch"``); large
    images, rasters on disk and streams (``"alone"``) come one at a time."""
    batch: list[_Loaded] = []
    for fut in reads:
        item = fut.result()
        if item.error is not None:
            report.failed.append((item.job.src, item.error))
            progress(1)
            continue
        if alone(item):
            if batch:
                yield "batch", batch
                batch = []
            yield "alone", [item]
            continue
        shape = item.frame.pixels.shape  # type: ignore[union-attr]
        if batch and (shape != batch[0].frame.pixels.shape  # type: ignore[union-attr]
                      or len(batch) >= batch_size):
            yield "batch", batch
            batch = []
        batch.append(item)
    if batch:
        yield "batch", batch


def _prefetch(pool: ThreadPoolExecutor, jobs: list[Job], depth: int) -> Iterator[Future]:
    """Submit reads ``depth`` ahead of the consumer."""
    pending: list[Future] = []
    it = iter(jobs)
    for job in it:
        pending.append(pool.submit(_load, job))
        if len(pending) >= depth:
            break
    for job in it:
        yield pending.pop(0)
        pending.append(pool.submit(_load, job))
    yield from pending


def translate_jobs(translator: Translator, jobs: list[Job], batch_size: int = 4,
                   progress: Callable[[int], None] | None = None, workers: int = 2,
                   tiling: TileOptions | None = None, geo: GeoOptions | None = None,
                   report: Report | None = None) -> Report:
    """Run ``jobs``; failures are collected in the report, never raised. Pass ``report`` to
    see what was done when the run is interrupted (KeyboardInterrupt propagates once the
    files in flight are written)."""
    report = report if report is not None else Report()
    progress = progress or (lambda n: None)
    renderer = Renderer(translator, tiling or TileOptions(), geo, batch_size)
    image_writer = WRITERS["image"]
    writes: list[tuple[Job, Future]] = []

    def write(job: Job, outputs: list[Output], writer: Writer) -> None:
        check_inside(job.dst, job.out)
        writer.write(job.dst, outputs)
        report.done.append(job.dst)  # here, so that an interrupted run still counts it

    with ThreadPoolExecutor(workers, thread_name_prefix="read") as readers, \
            ThreadPoolExecutor(workers, thread_name_prefix="write") as writers:
        reads = _prefetch(readers, jobs, depth=max(2 * batch_size, 4))
        for kind, batch in _work(reads, batch_size, report, progress,
                                 lambda item: _alone(item, renderer)):
            if kind == "batch":
                try:
                    outs = renderer.whole([item.frame for item in batch])  # type: ignore[misc]
                except (ValueError, RuntimeError) as exc:
                    report.failed.extend((item.job.src, f"translation failed: {exc}")
                                         for item in batch)
                    continue
                for item, out in zip(batch, outs, strict=True):
                    writes.append((item.job, writers.submit(write, item.job, [_detached(out)],
                                                            image_writer)))
                progress(len(batch))
                writes = _collect(writes, report, wait=False)
                continue
            job = batch[0].job
            try:
                queued = _run_alone(batch.pop(), renderer, report)
                if queued is not None:  # translated here, written in the background
                    writes.append((job, writers.submit(write, job, *queued)))
            except OutsideError as exc:
                report.failed.append((job.src, str(exc)))
            except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
                report.failed.append((job.src, f"translation failed: {exc}"))
            progress(1)
            writes = _collect(writes, report, wait=False)
        _collect(writes, report, wait=True)
    report.failed.sort(key=lambda x: str(x[0]))
    return report


def _run_alone(item: _Loaded, renderer: Renderer,
               report: Report) -> tuple[list[Output], Writer] | None:
    """Translate and write one large image, raster or stream with the writer of its output
    kind. A streaming writer writes here (translating as it writes); for the others the
    whole outputs and their writer are returned, to be written in the background."""
    job, frame = item.job, item.frame
    assert frame is not None
    writer = WRITERS[output_kind(frame, job.dst, renderer.tile_for(frame) is not None)]
    reason = writer.refuses(frame, job.dst)
    if reason is not None:
        report.failed.append((job.src, reason))
        return None
    check_inside(job.dst, job.out)  # before a streaming writer creates folders
    outputs = (renderer.stream(chain([frame], item.rest)) if item.rest is not None
               else [renderer.render(frame)])
    if writer.streams:
        writer.write(job.dst, outputs)
        report.done.append(job.dst)
        return None
    return [_detached(o) for o in outputs], writer


def _detached(out: Output) -> Output:
    """``out`` computed whole, without its input's pixels (a queued write holds only what
    it writes)."""
    return Output.of(replace(out.frame, pixels=None), out.whole())


def _collect(writes: list[tuple[Job, Future]], report: Report,
             wait: bool) -> list[tuple[Job, Future]]:
    rest = []
    for job, fut in writes:
        if not wait and not fut.done():
            rest.append((job, fut))
            continue
        try:
            fut.result()
        except OutsideError as exc:
            report.failed.append((job.src, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
            report.failed.append((job.src, f"cannot write {job.dst}: {exc}"))
    return rest
