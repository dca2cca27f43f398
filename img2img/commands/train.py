"""``img2img train`` / ``tools/train.py``: the flags every method shares plus the task's own,
turned into a :class:`~img2img.config.TrainConfig` (the one place that does it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from img2img.commands.common import (
    EXIT_OK,
    OneLineParser,
    add_common,
    apply_max_image_pixels,
    guarded,
    setup_logging,
)
from img2img.config import SHARED_FIELDS, TrainConfig
from img2img.options import add_options, from_namespace, non_negative_int, positive_int


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
    add_common(p, d.batch_size, "images per optimisation step (default %(default)s)")
    summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None
    add_options(p, cls.Options, f"--task {task}", summary)
    return p


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
    """Entry point of ``img2img train``: exit 0 done, 2 usage error (or a run already in
    ``--out`` without ``--resume``), 130 / 143 stopped by Ctrl-C / SIGTERM after saving."""
    parser, ns = parse_train_args(argv)
    cfg = train_config(ns)
    setup_logging(cfg.quiet)
    apply_max_image_pixels(ns)
    from img2img.runtime import keep_freed_memory

    keep_freed_memory()
    from img2img.engine.trainer import RunExistsError

    args = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C in the loop saves and stops the run itself (TrainingStopped); before it, nothing
    # was saved. Any other error in the loop was saved first: one line, not a traceback.
    return guarded(lambda: _train(parser, ns, cfg, args), ns.debug, usage=(RunExistsError,),
                   interrupted="interrupted before training started; nothing was saved")


def _train(parser: argparse.ArgumentParser, ns: argparse.Namespace, cfg: TrainConfig,
           args: list[str]) -> int:
    from img2img.engine.interrupt import TrainingStopped
    from img2img.engine.trainer import Trainer

    trainer = None
    try:
        given = _given_flags(parser, args, ns)
        trainer = Trainer(cfg, stop_after=ns.stop_after, given=given)
        out = trainer.run()
        trainer.finish()
    except TrainingStopped as exc:
        if trainer is None or trainer.world.is_main:
            print(exc, file=sys.stderr)
        return exc.exit_code
    if trainer.world.is_main:
        print(f"done: {trainer.step}/{trainer.total} steps; checkpoints in {out}")
    return EXIT_OK
