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

Videos (``video_probe.VIDEO_EXTENSIONS``, read by ``video.VideoReader``) keep their name and
container (``ext`` does not apply); with ``frames_out`` their frames go to a folder of
numbered PNGs there instead (``ROOT/clip.mp4`` -> ``FRAMES_OUT/clip/000001.png``), which is
never skipped as a whole: frames present are kept, and a video with all its frames present
counts as skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path

from img2img.data.io import ImageReadError, ImageWriteError, dropped_frames_reason
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
from img2img.inference.readers import named_reader, reader_for
from img2img.inference.render import Renderer
from img2img.inference.tile_layout import TileOptions
from img2img.inference.translator import Translator
from img2img.inference.writers import (
    WRITERS,
    KeepsParts,
    Writer,
    output_kind,
    writable_suffixes,
)


@dataclass
class Job:
    """One input file and where its output goes; ``out`` is the output folder that ``dst``
    must still resolve inside when it is written (None: not checked). ``frames``: ``dst`` is
    a folder for the stream's frames (``--frames-out``), written by the ``"frames"`` writer."""

    src: Path
    dst: Path
    out: Path | None = None
    frames: bool = False


@dataclass
class Plan:
    """What :func:`plan` found: jobs to run, outputs already present (skipped), inputs that
    will not be translated with the reason, the leftover temp files it removed, and
    (input, output) of every still image to translate or skipped, in input order (for the
    gallery and metrics)."""

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
         overwrite: bool = False, frames_out: str | Path | None = None) -> Plan:
    """Jobs to run and outputs already present (skipped), after all safety checks.

    Raises UsageError for a bad request (before anything is read or written): an ``ext``
    that cannot be written, no inputs, an output inside the input or over an input file,
    two inputs with one output. Inputs that cannot be translated are in ``Plan.failed``.
    An input whose reader names its output kind (``readers.named_reader``: a video) keeps its
    name and format (``ext`` does not apply); with ``frames_out``, a stream's frames go to
    the folder ``FRAMES_OUT/rel/path/clip`` instead (never skipped as a whole: its writer
    keeps the frames present).
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
    inputs = [(root, f"--input {input_spec}")] if root else []
    check_clear_of_inputs(output, inputs)
    check_output_folder(output)
    frames = None if frames_out is None else Path(frames_out).resolve()
    if frames_out is not None:
        check_clear_of_inputs(frames_out, inputs, flag="--frames-out")
        check_output_folder(frames_out, "--frames-out")
    result = Plan(failed=list(found.rejected))
    planned: list[Job] = []
    sources: dict[Path, Path] = {}
    # abspath, not resolve: a symlinked input must keep its place in the tree
    base = Path(os.path.abspath(found.base or "."))
    for f in found.files:
        rel = Path(os.path.abspath(f)).relative_to(base)
        reader = named_reader(f)
        if reader is None:  # the output kind follows from the frame read and the suffix
            job = Job(f, out / (rel.with_suffix(ext) if ext else rel), out)
            reason = None if ext else _unwritable(f, job.dst)
        elif frames is not None and reader.stream:
            job = Job(f, frames / rel.with_suffix(""), frames, frames=True)
            reason = None
        else:  # its writer writes the input's own format
            job = Job(f, out / rel, out)
            reason = None
        reason = reason or outside_reason(job.dst, job.out)
        if reason is not None:
            result.failed.append((f, reason))
            continue
        other = sources.setdefault(job.dst, f)
        if other != f:  # a.jpg and a.png with --ext png; a.mp4 and a.mkv with --frames-out
            flag = "--frames-out" if job.frames else f"--ext {ext}"
            keep = "" if job.frames else " or keep the input formats"
            raise UsageError(f"{other} and {f} would both be written to {job.dst} ({flag}); "
                             f"translate them in separate runs{keep}")
        planned.append(job)
        if reader is None:
            result.pairs.append((f, job.dst))
    check_clear_of_inputs(out, files=found.files, destinations=[j.dst for j in planned])
    for job in planned:
        if job.dst.exists() and not overwrite and not job.frames:
            result.skipped.append(job.dst)
        else:
            result.jobs.append(job)
    for folder in (out, frames):
        if folder is not None and folder.is_dir():
            result.removed_temp += remove_stale_temps(folder)
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
    """Read ``job.src`` with its reader (a stream's first frame only), unless the file holds
    several frames or pages a still-image reader would keep only one of."""
    try:
        reader = reader_for(job.src)
        reason = None if reader.stream else dropped_frames_reason(job.src)
        if reason:
            return _Loaded(job, error=reason)
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
                   report: Report | None = None,
                   writers: Mapping[str, Writer] | None = None) -> Report:
    """Run ``jobs``; failures are collected in the report, never raised. Pass ``report`` to
    see what was done when the run is interrupted (KeyboardInterrupt propagates once the
    files in flight are written). ``writers``: the writer table (default ``WRITERS``; a
    run's settings applied: ``writers.configured``)."""
    report = report if report is not None else Report()
    progress = progress or (lambda n: None)
    renderer = Renderer(translator, tiling or TileOptions(), geo, batch_size)
    table = WRITERS if writers is None else writers
    image_writer = table["image"]
    writes: list[tuple[Job, Future]] = []

    def write(job: Job, outputs: list[Output], writer: Writer) -> None:
        check_inside(job.dst, job.out)
        writer.write(job.dst, outputs)
        report.done.append(job.dst)  # here, so that an interrupted run still counts it

    with ThreadPoolExecutor(workers, thread_name_prefix="read") as read_pool, \
            ThreadPoolExecutor(workers, thread_name_prefix="write") as write_pool:
        reads = _prefetch(read_pool, jobs, depth=max(2 * batch_size, 4))
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
                    writes.append((item.job, write_pool.submit(write, item.job,
                                                               [_detached(out)], image_writer)))
                progress(len(batch))
                writes = _collect(writes, report, wait=False)
                continue
            job = batch[0].job
            try:
                queued = _run_alone(batch.pop(), renderer, table, report)
                if queued is not None:  # translated here, written in the background
                    writes.append((job, write_pool.submit(write, job, *queued)))
            except OutsideError as exc:
                report.failed.append((job.src, str(exc)))
            except ImageReadError as exc:  # a stream's frame that cannot be decoded
                report.failed.append((job.src, exc.reason))
            except ImageWriteError as exc:
                report.failed.append((job.src, f"cannot write {job.dst}: {exc.reason}"))
            except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
                report.failed.append((job.src, f"translation failed: {exc}"))
            progress(1)
            writes = _collect(writes, report, wait=False)
        _collect(writes, report, wait=True)
    report.failed.sort(key=lambda x: str(x[0]))
    return report


def _run_alone(item: _Loaded, renderer: Renderer, writers: Mapping[str, Writer],
               report: Report) -> tuple[list[Output], Writer] | None:
    """Translate and write one large image, raster or stream with the writer of its output
    kind. A streaming writer writes here (translating as it writes); for the others the
    whole outputs and their writer are returned, to be written in the background. A stream
    with nothing left to write (its writer kept every frame) counts as skipped."""
    job, frame = item.job, item.frame
    assert frame is not None
    try:
        kind = output_kind(frame, job.dst, renderer.tile_for(frame) is not None, job.frames)
        writer = writers[kind]
        reason = writer.refuses(frame, job.dst)
        if reason is not None:
            report.failed.append((job.src, reason))
            return None
        check_inside(job.dst, job.out)  # before a streaming writer creates folders
        taken = [0]
        if item.rest is None:
            outputs: Iterable[Output] = [renderer.render(frame)]
        else:
            frames: Iterable[Frame] = chain([frame], item.rest)
            if isinstance(writer, KeepsParts):
                frames = writer.pending(job.dst, frames)
            outputs = _counted(renderer.stream(frames), taken)
        if not writer.streams:
            return [_detached(o) for o in outputs], writer
        writer.write(job.dst, outputs)
        if item.rest is not None and taken[0] == 0:
            report.skipped.append(job.dst)
        else:
            report.done.append(job.dst)
        return None
    finally:
        if isinstance(item.rest, Generator):
            item.rest.close()  # a stream left unfinished closes its file now


def _counted(outputs: Iterable[Output], counter: list[int]) -> Iterator[Output]:
    """``outputs``, counting in ``counter[0]`` how many were taken."""
    for out in outputs:
        counter[0] += 1
        yield out


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
