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

Reading/decoding and encoding/writing run in background threads so that the model
computes while the previous batch is written and the next one is read.

Large images (more input pixels than ``TileOptions.limit``, or any image with
``TileOptions.tile``) are not batched with others: they run one at a time in overlapping
tiles (``tiling``); a TIFF output is then written window by window through rasterio when
it is installed. Georeferenced TIFFs go through ``geotiff`` (read and written by windows,
georeferencing kept) and need a TIFF output.

Videos (``video_probe.VIDEO_EXTENSIONS``) go through ``video`` after the images, one at a
time: into a video of the same name and container (``--ext`` does not apply), or with
``frames_out`` into a folder of numbered PNGs there (``ROOT/clip.mp4`` ->
``FRAMES_OUT/clip/000001.png``), which is never skipped as a whole: frames present are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from img2img.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageTooLargeError,
    dropped_frames_reason,
    read_image,
    write_image,
)
from img2img.data.paths import (
    OutsideError,
    check_clear_of_inputs,
    check_inside,
    check_output_folder,
    outside_reason,
    remove_stale_temps,
)
from img2img.data.scan import scan_inputs
from img2img.data.video_probe import VideoError, is_video_path
from img2img.errors import UsageError
from img2img.inference.geotiff import (
    INSTALL_HINT,
    TIFF_EXTENSIONS,
    GeoOptions,
    GeoTiffError,
    is_georeferenced,
    rasterio_available,
    translate_geotiff,
    write_tiff_tiled,
)
from img2img.inference.tiling import TileOptions, translate_array_tiled, write_png_tiled
from img2img.inference.translator import Translator
from img2img.inference.video import VideoOptions, translate_video_job


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


_WRITES = ", ".join(e[1:] for e in sorted(IMAGE_EXTENSIONS))


def _output_ext(ext: str | None) -> str | None:
    """``"PNG"``/``".png"`` -> ``".png"``; UsageError for a format the writer cannot write."""
    if ext is None:
        return None
    norm = (ext if ext.startswith(".") else "." + ext).lower()
    if norm not in IMAGE_EXTENSIONS:
        raise UsageError(f"--ext {ext}: cannot write that format (use one of {_WRITES})")
    return norm


def _unwritable(src: Path, dst: Path) -> str | None:
    """Why ``dst`` (the input's own format, no --ext) cannot be written; None if it can."""
    if dst.suffix.lower() in IMAGE_EXTENSIONS:
        return None
    # An animated GIF would fail anyway: say that first rather than ask for --ext.
    return dropped_frames_reason(src) or (
        f"cannot write {dst.suffix or 'files without a suffix'} output (the input's format); "
        f"pass --ext with one of {_WRITES}")


def plan(input_spec: str, output: str | Path, ext: str | None = None,
         overwrite: bool = False, frames_out: str | Path | None = None) -> Plan:
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
    frames = Path(frames_out).resolve() if frames_out is not None else None
    if frames_out is not None:
        check_clear_of_inputs(frames_out, [(root, f"--input {input_spec}")] if root else [],
                              flag="--frames-out")
        check_output_folder(frames_out, "--frames-out")
    result = Plan(failed=list(found.rejected))
    planned: list[tuple[Path, Path]] = []
    sources: dict[Path, Path] = {}
    # abspath, not resolve: a symlinked input must keep its place in the tree
    base = Path(os.path.abspath(found.base or "."))
    for f in found.files:
        rel = Path(os.path.abspath(f)).relative_to(base)
        if is_video_path(f):  # same name and container, or a folder of its frames
            dst, inside = (frames / rel.with_suffix(""), frames) if frames else (out / rel, out)
            reason = outside_reason(dst, inside)
        else:
            dst = out / (rel.with_suffix(ext) if ext else rel)
            reason = (None if ext else _unwritable(f, dst)) or outside_reason(dst, out)
        if reason is not None:
            result.failed.append((f, reason))
            continue
        other = sources.setdefault(dst, f)
        if other != f and is_video_path(f):  # a.mp4 and a.mkv: one frames folder a/
            raise UsageError(f"{other} and {f} would both be written to {dst} (--frames-out); "
                             f"translate them in separate runs")
        if other != f:  # e.g. a.jpg and a.png with --ext png
            raise UsageError(f"{other} and {f} would both be written to {dst} (--ext {ext}); "
                             f"translate them in separate runs or keep the input formats")
        planned.append((f, dst))
    check_clear_of_inputs(out, files=found.files, destinations=[d for _, d in planned])
    result.pairs = [(f, dst) for f, dst in planned if not is_video_path(f)]
    for f, dst in planned:
        frames_job = frames is not None and is_video_path(f)  # its frames are checked one by one
        if dst.exists() and not overwrite and not frames_job:
            result.skipped.append(dst)
        else:
            result.jobs.append(Job(f, dst, frames if frames_job else out))
    for folder in (out, frames):
        if folder is not None and folder.is_dir():
            result.removed_temp += remove_stale_temps(folder)
    result.failed.sort(key=lambda x: str(x[0]))
    return result


@dataclass
class _Loaded:
    """A read result: the decoded image, or why it failed, or a GeoTIFF left on disk."""

    job: Job
    image: np.ndarray | None = None
    error: str | None = None
    geo: bool = False


def _read(job: Job) -> _Loaded:
    try:
        if is_georeferenced(job.src):
            return _Loaded(job, geo=True)
        return _Loaded(job, read_image(job.src))
    except ImageTooLargeError as exc:
        return _too_large(job, exc)
    except ImageReadError as exc:
        return _Loaded(job, error=exc.reason)
    except (GeoTiffError, OSError) as exc:
        return _Loaded(job, error=str(exc))


def _load(job: Job) -> _Loaded:
    """``_read``, unless the file holds several frames or pages (it would keep only one)."""
    reason = dropped_frames_reason(job.src)
    return _Loaded(job, error=reason) if reason else _read(job)


def _too_large(job: Job, exc: ImageTooLargeError) -> _Loaded:
    """A TIFF too large to decode whole is read by windows (the GeoTIFF path, which also
    takes plain TIFFs) when rasterio is installed and the output is a TIFF."""
    if exc.format != "TIFF":
        return _Loaded(job, error=exc.reason)
    if not rasterio_available():
        return _Loaded(job, error=f"{exc.reason}, or translate it by windows after "
                                  f"{INSTALL_HINT}")
    if job.dst.suffix.lower() not in TIFF_EXTENSIONS:
        return _Loaded(job, error=f"{exc.reason}, or translate it by windows into a .tif "
                                  f"output (--ext tif)")
    return _Loaded(job, geo=True)


def _work(reads: Iterator[Future], batch_size: int, report: Report,
          progress: Callable[[int], None],
          tiled: Callable[[np.ndarray], bool]) -> Iterator[tuple[str, list[_Loaded]]]:
    """Group consecutive readable images of equal shape into batches (``"batch"``); large
    images (``"large"``) and GeoTIFFs (``"geo"``) come alone."""
    batch: list[_Loaded] = []
    for fut in reads:
        item = fut.result()
        if item.error is not None:
            report.failed.append((item.job.src, item.error))
            progress(1)
            continue
        if item.geo or tiled(item.image):  # type: ignore[arg-type]
            if batch:
                yield "batch", batch
                batch = []
            yield ("geo" if item.geo else "large"), [item]
            continue
        if batch and (item.image.shape != batch[0].image.shape  # type: ignore[union-attr]
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
                   report: Report | None = None, video: VideoOptions | None = None) -> Report:
    """Run ``jobs``; failures are collected in the report, never raised. Pass ``report`` to
    see what was done when the run is interrupted (KeyboardInterrupt propagates once the
    files in flight are written). Videos run after the images (``video`` says how)."""
    report = report if report is not None else Report()
    videos = [job for job in jobs if is_video_path(job.src)]
    jobs = [job for job in jobs if not is_video_path(job.src)]
    progress = progress or (lambda n: None)
    tiling = tiling or TileOptions()
    scale = translator.meta.scale
    writes: list[tuple[Job, Future]] = []

    def write(job: Job, out: np.ndarray) -> None:
        check_inside(job.dst, job.out)
        write_image(job.dst, out)
        report.done.append(job.dst)  # here, so that an interrupted run still counts it

    def tile_for(img: np.ndarray) -> int | None:
        return tiling.tile_for(img.shape[0], img.shape[1], scale)

    with ThreadPoolExecutor(workers, thread_name_prefix="read") as readers, \
            ThreadPoolExecutor(workers, thread_name_prefix="write") as writers:
        reads = _prefetch(readers, jobs, depth=max(2 * batch_size, 4))
        for kind, batch in _work(reads, batch_size, report, progress,
                                 lambda img: tile_for(img) is not None):
            if kind == "batch":
                try:
                    outs = translator.translate_arrays([item.image for item in batch])
                except (ValueError, RuntimeError) as exc:
                    report.failed.extend((item.job.src, f"translation failed: {exc}")
                                         for item in batch)
                    continue
                for item, out in zip(batch, outs, strict=True):
                    writes.append((item.job, writers.submit(write, item.job, out)))
                progress(len(batch))
                writes = _collect(writes, report, wait=False)
                continue
            item = batch[0]
            job = item.job
            try:
                check_inside(job.dst, job.out)  # before the tiled writers create folders
                if kind == "geo":
                    if job.dst.suffix.lower() not in TIFF_EXTENSIONS:
                        raise GeoTiffError(f"a georeferenced TIFF needs a .tif output to keep "
                                           f"its georeferencing, not {job.dst.suffix}")
                    translate_geotiff(translator, job.src, job.dst, geo, tiling, batch_size)
                    report.done.append(job.dst)
                else:
                    img, tile = item.image, tile_for(item.image)  # type: ignore[arg-type]
                    if job.dst.suffix.lower() in TIFF_EXTENSIONS and rasterio_available():
                        write_tiff_tiled(translator, img, job.dst, tile, tiling.overlap,
                                         batch_size)
                        report.done.append(job.dst)
                    elif job.dst.suffix.lower() == ".png":
                        write_png_tiled(translator, img, job.dst, tile, tiling.overlap,
                                        batch_size)
                        report.done.append(job.dst)
                    else:
                        out = translate_array_tiled(translator, img, tile, tiling.overlap,
                                                    batch_size)
                        writes.append((job, writers.submit(write, job, out)))
            except OutsideError as exc:
                report.failed.append((job.src, str(exc)))
            except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
                report.failed.append((job.src, f"translation failed: {exc}"))
            del item, batch
            progress(1)
            writes = _collect(writes, report, wait=False)
        _collect(writes, report, wait=True)
    for job in videos:
        try:
            wrote = translate_video_job(translator, job.src, job.dst, job.out,
                                        video or VideoOptions(), tiling, batch_size)
            (report.done if wrote else report.skipped).append(job.dst)
        except (VideoError, OutsideError) as exc:
            report.failed.append((job.src, str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported per file, the run goes on
            report.failed.append((job.src, f"translation failed: {exc}"))
        progress(1)
    report.failed.sort(key=lambda x: str(x[0]))
    return report


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
