"""The shared training loop: schedule, progress, samples, logs, checkpoints, resume.

Failures do not lose the run. Every training image's header is checked before the first
step (:func:`img2img.data.training_check.check_images`); an image that still fails when drawn is
replaced and counted (``bad_images`` in the loss log), or with ``--on-bad-image stop`` ends
the run. SIGINT/SIGTERM end it after the current step (:mod:`img2img.engine.interrupt`).
Both save the resume state first; so does any other exception in the loop, which is then
re-raised.

Under torchrun every rank checks for a stop signal or a stopping bad image at each step
(one small all-reduce), so all ranks stop at the same step and save together. An exception
on one rank cannot be handled together without risking a hang (the others may be inside a
collective of the step): rank 0 then writes its own state alone (weights, optimisers and
its random streams; a resumed run restarts the other ranks' streams from rank 0's), and
another rank writes nothing (the last regular save stays); torchrun then stops the job.

With ``--val-every N`` the exported generators are validated every N steps and at the last
(:mod:`img2img.engine.validation`), after that step's sample grid and before its save; under
torchrun rank 0 validates while the others wait for its values (a broadcast), and a failure
there is raised on every rank. ``report.html`` is rewritten after every validation and when
the run ends, however it ends; a report that cannot be written is only a warning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from torchvision.utils import make_grid
from tqdm import tqdm

from img2img import __version__
from img2img.checkpoint import save_generator
from img2img.config import TrainConfig
from img2img.data.convert import from_tensor
from img2img.data.fallback import bad_reports
from img2img.data.io import atomic_write_bytes, write_image
from img2img.data.training_check import check_images
from img2img.data.unpaired import CounterSampler
from img2img.engine import distributed
from img2img.engine.interrupt import (
    Aborted,
    BadImageStop,
    Interrupted,
    TrainingStopped,
    ignore_stop_signals,
    stop_signals,
)
from img2img.engine.logs import LossLog
from img2img.engine.resume_config import explicit_fields, restore_config
from img2img.engine.state import (
    RESUME_FILE,
    load_resume,
    read_saved_config,
    rng_state,
    save_resume,
    set_rng_state,
)
from img2img.errors import UsageError
from img2img.runtime import resolve_device, resolve_precision, seed_everything
from img2img.tasks import task_class

if TYPE_CHECKING:
    from img2img.engine.validation import Validator

log = logging.getLogger(__name__)

# Default when neither --steps nor --epochs is given and the task names none: 100 + 100.
DEFAULT_EPOCHS = (100, 100)


class RunExistsError(RuntimeError):
    """The output folder already holds a run and ``--resume`` was not given."""


def resolve_schedule(cfg: TrainConfig, dataset_len: int, world_size: int = 1,
                     default_epochs: tuple[int, int] = DEFAULT_EPOCHS) -> tuple[int, int]:
    """Total steps and the number of final steps over which the lr decays linearly to 0.

    ``--steps N`` decays over the last ``--decay-steps`` (default N // 2); ``--epochs N
    --epochs-decay M`` runs N + M epochs, decaying over the last M (default M = N). With
    neither, the task's published ``default_epochs`` (constant, decay). An epoch is one
    pass over the data by all ``world_size`` processes together.
    """
    if cfg.steps is not None and cfg.epochs is not None:
        raise UsageError("give either --steps or --epochs, not both")
    if cfg.steps is not None:
        total = cfg.steps
        decay = cfg.decay_steps if cfg.decay_steps is not None else total // 2
    else:
        per_epoch = max(1, dataset_len // (cfg.batch_size * world_size))
        epochs = cfg.epochs if cfg.epochs is not None else default_epochs[0]
        epochs_decay = cfg.epochs_decay
        if epochs_decay is None:
            epochs_decay = epochs if cfg.epochs is not None else default_epochs[1]
        total = (epochs + epochs_decay) * per_epoch
        decay = epochs_decay * per_epoch
    if total < 1:
        raise UsageError(f"the run must have at least one step (got {total})")
    if not 0 <= decay <= total:
        raise UsageError(f"decay steps ({decay}) must be between 0 and the total ({total})")
    return total, decay


def linear_decay(total: int, decay: int):  # noqa: ANN201 - returns a lr lambda
    """Multiplier 1 for ``total - decay`` steps, then linearly down to 0 at ``total``."""
    start = total - decay

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start + 1) / (decay + 1))

    return factor


class Trainer:
    """Runs a task's train steps with checkpoints that resume bit-exactly on CPU.

    ``given``: the settings the user chose explicitly (the command-line flags given); with
    ``cfg.resume`` the run folder's configuration is restored and only these override it
    (:func:`img2img.engine.resume_config.restore_config`). None: the fields of ``cfg`` that
    differ from the defaults.
    """

    ON_BAD_IMAGE = ("skip", "stop")

    def __init__(self, cfg: TrainConfig, stop_after: int | None = None,
                 given: Collection[str] | None = None) -> None:
        self.stop_after = stop_after
        self.out = Path(cfg.out)
        self.world = distributed.world_from_env()
        chosen = set(explicit_fields(cfg) if given is None else given)
        if self.world.distributed:
            # the process group is joined before the run folder can be read (rank 0 reads
            # it), so under torchrun the device is the command line's, never restored
            chosen.add("device")
            self.device = distributed.device_for(self.world, resolve_device(cfg.device))
            distributed.init(self.world, self.device)
        self._state: dict[str, Any] | None = None
        if cfg.resume:
            self._state = self._read_resume(self.out / RESUME_FILE)
            cfg = restore_config(cfg, self._state["config"], chosen, self.out)
        self.cfg = cfg
        if cfg.on_bad_image not in self.ON_BAD_IMAGE:
            raise UsageError(f"--on-bad-image must be skip or stop, not {cfg.on_bad_image!r}")
        if not self.world.distributed:
            self.device = resolve_device(cfg.device)
        # auto is resolved once, here; config.json records both (a resume re-resolves auto)
        self.precision_requested = cfg.precision
        cfg.precision = resolve_precision(cfg.precision, self.device, training=True)
        if cfg.sync_bn and not self.world.distributed:
            log.info("--sync-bn has no effect in a single process")
        seed_everything(cfg.seed)  # same seed everywhere: every rank starts from rank 0's weights
        cls = task_class(cfg.task)
        cls.apply_defaults(cfg)
        self.task = cls(cfg, self.device)
        if self.world.distributed:
            self.task.distribute(lambda net: distributed.wrap(net, self.device, cfg.sync_bn))
            if self.world.rank > 0:  # own dropout noise per rank; rank 0 = a single process
                torch.manual_seed(cfg.seed + self.world.rank)
        if cfg.compile:
            self.task.compile_networks()
        self.dataset = self.task.build_dataset()
        self._check_images()
        self.total, self.decay = resolve_schedule(cfg, len(self.dataset), self.world.size,
                                                  cls.default_epochs)
        self.schedulers = {k: LambdaLR(opt, linear_decay(self.total, self.decay))
                           for k, opt in self.task.optimizers.items()}
        self.step = 0
        self.bad_images = 0  # images replaced because they failed when drawn (this rank)
        self._warned: set[str] = set()
        # --val-every: rank 0's validator (built now: missing weights stop the run here); the
        # resume file's validation record, kept as it is when this part does not validate
        self.validator: Validator | None = None
        self._val_state: dict[str, Any] = {}
        self._val_shown: dict[str, str] = {}
        if cfg.val_every:
            self._on_main(self._build_validator)

    def _build_validator(self) -> None:
        from img2img.engine.validation import Validator

        self.validator = Validator(self.task, self.cfg, self.device, self.out)

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0 and its (small) result on every rank. An exception there is
        raised on every rank -- the original on rank 0, a UsageError or RuntimeError with
        its message elsewhere -- so no rank waits for one that has failed."""
        result, error = None, None
        if self.world.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                error = exc
        if not self.world.distributed:
            if error is not None:
                raise error
            return result
        told = None if error is None else (isinstance(error, UsageError), str(error))
        result, told = distributed.broadcast(self.world, (result, told))
        if error is not None:
            raise error
        if told is not None:
            raise (UsageError if told[0] else RuntimeError)(told[1])
        return result

    def _check_images(self) -> None:
        """Every training file's header and size, before anything is written (rank 0
        checks, every rank gets the verdict)."""
        verdict: str | None = None
        if self.world.is_main:
            t0 = time.perf_counter()
            try:
                n = check_images(self.dataset, self.task.input_geometry())
                log.info("checked %d training images in %.2f s", n, time.perf_counter() - t0)
            except UsageError as exc:
                verdict = str(exc)
        verdict = distributed.broadcast(self.world, verdict)
        if verdict is not None:
            raise UsageError(verdict)

    # --- checkpoints --------------------------------------------------------------------
    def _read_resume(self, path: Path) -> dict[str, Any]:
        """Rank 0 reads the resume file (and the configuration, falling back to
        ``config.json``) and sends it to the others (no shared filesystem needed)."""
        state: Any = None
        if self.world.is_main:
            try:
                state = load_resume(path)
                if not isinstance(state.get("config"), dict):
                    state["config"] = read_saved_config(path.parent)
            except (FileNotFoundError, ValueError) as exc:
                state = exc
        state = distributed.broadcast(self.world, state)
        if isinstance(state, Exception):
            raise state
        return state

    def _prepare_out(self) -> None:
        resume_path = self.out / RESUME_FILE
        # rank 0 looks at the folder; every rank gets the same verdict
        exists = distributed.broadcast(self.world, resume_path.exists())
        if self.cfg.resume:
            self._load(resume_path)
        elif exists:
            raise RunExistsError(
                f"{self.out} already holds a training run ({RESUME_FILE}); pass --resume to "
                f"continue it or choose another --out"
            )
        if not self.world.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg.to_dict() | {"version": __version__, "total_steps": self.total,
                                    "decay_steps": self.decay, "device": str(self.device),
                                    "precision_requested": self.precision_requested}
        atomic_write_bytes(self.out / "config.json", json.dumps(cfg, indent=2).encode())

    def _load(self, path: Path) -> None:
        state = self._state if self._state is not None else self._read_resume(path)
        self._state = None
        if state.get("task") != self.cfg.task:
            raise UsageError(f"{path}: resume file is for task {state.get('task')!r}, "
                             f"not {self.cfg.task!r}")
        self.task.load_state_dict(state["task_state"])
        for k, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][k])
        ranks = state.get("ranks") or []
        self.bad_images = int(state.get("bad_images", 0)) if self.world.is_main else 0
        if self.world.distributed and len(ranks) == self.world.size:
            # each rank continues its own random streams and image pools
            set_rng_state(ranks[self.world.rank]["rng"])
            self.task.load_extra_state(ranks[self.world.rank]["extra"])
            self.bad_images = int(ranks[self.world.rank].get("bad_images", self.bad_images))
        else:
            if self.world.distributed or len(ranks) > 1:
                log.warning("%s was written by %d process(es), this run has %d: random "
                            "streams and image pools restart from rank 0's", path,
                            max(1, len(ranks)), self.world.size)
            set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._val_state = state.get("validation") or {}  # absent in older resume files
        if self.validator is not None:
            self.validator.load_state_dict(self._val_state)
        log.info("resumed %s at step %d", path, self.step)

    def save(self, together: bool = True) -> None:
        """Write the inference generators and the resume file (each atomically); under
        torchrun every rank takes part (its random state and image pools are gathered) and
        rank 0 writes. ``together=False`` (after an error on this rank): no collective;
        rank 0 writes its own state alone, the other ranks write nothing."""
        ranks = None
        if self.world.distributed and together:
            ranks = distributed.gather(self.world, {
                "rng": rng_state(), "extra": self.task.extra_state(),
                "weight_sums": self._weight_sums(), "bad_images": self.bad_images})
            if not self.world.is_main:
                return
            if any(r["weight_sums"] != ranks[0]["weight_sums"] for r in ranks):
                log.warning("the processes' weights differ (per-rank sums in %s): "
                            "gradients were not synchronised", RESUME_FILE)
        elif not self.world.is_main:
            return
        for name, (net, meta) in self.task.exports().items():
            save_generator(self.out / name, distributed.unwrap(net), meta)
        save_resume(self.out / RESUME_FILE, {
            "version": __version__,
            "task": self.cfg.task,
            "step": self.step,
            "task_state": self.task.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng_state(),
            "ranks": ranks or [],
            "world_size": self.world.size,
            "bad_images": self.bad_images,
            "config": self.cfg.to_dict() | {"precision_requested": self.precision_requested},
            "validation": (self.validator.state_dict() if self.validator is not None
                           else self._val_state),
        })

    def _weight_sums(self) -> dict[str, float]:
        """Sum of every network's parameters (float64): equal on all ranks when in sync."""
        return {k: float(sum(p.detach().double().sum() for p in net.parameters()))
                for k, net in self.task.nets.items()}

    def _write_samples(self, batch: dict[str, Any]) -> Path:
        rows = self.task.sample_rows(batch)
        images = torch.cat([r[:1] for r in rows], 0).float().cpu()
        grid = make_grid(images, nrow=1, padding=2, pad_value=1.0)
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        write_image(path, from_tensor(grid))
        return path

    # --- loop ---------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        cfg = self.cfg
        # An explicit generator keeps the DataLoader from drawing on the global torch RNG,
        # so the model's random stream is the same with or without an interruption.
        return DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=CounterSampler(self.step * cfg.batch_size, self.world.rank,
                                   self.world.size, cfg.batch_size),
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
            worker_init_fn=ignore_stop_signals if cfg.workers > 0 else None,
        )

    def _note_bad_images(self, batch: dict[str, Any]) -> bool:
        """Count and warn about (once per file) the images the batch's samples replaced;
        True if the run should stop for them (``--on-bad-image stop``)."""
        reports = bad_reports(batch.get("bad"))
        self.bad_images += len(reports)
        for report in reports:
            if report not in self._warned:
                self._warned.add(report)
                log.warning("unreadable training image, replaced by the next one: %s "
                            "(%d replaced so far)", report, self.bad_images)
        return bool(reports) and self.cfg.on_bad_image == "stop"

    def run(self) -> Path:
        """Train until the schedule (or ``stop_after`` steps of this run) is done.

        Raises :class:`Interrupted` after a stop signal and :class:`BadImageStop` for an
        unreadable image with ``--on-bad-image stop``, both after saving; any other
        exception in the loop is re-raised after saving the last completed step.
        """
        with stop_signals() as stop:
            self._prepare_out()
            cfg = self.cfg
            main = self.world.is_main
            if cfg.val_every:  # the reference features, once (unless restored by _load)
                self._on_main(lambda: self.validator.prepare())
            logs = LossLog(self.out, cfg.log_format, cfg.tensorboard,
                           start_step=self.step) if main else None
            end = self.total if self.stop_after is None else min(self.total,
                                                                  self.step + self.stop_after)
            bar = tqdm(total=self.total, initial=self.step, disable=cfg.quiet or not main,
                       unit="step", dynamic_ncols=True)
            self.task.train()
            try:
                self._loop(end, logs, bar, stop)
            finally:
                bar.close()
                if logs is not None:
                    logs.close()
                if main:
                    self._write_report()
        return self.out

    def _write_report(self) -> None:
        """(Re)write ``report.html``; a failure is a warning, never the end of the run."""
        from img2img.engine.report import write_report

        try:
            write_report(self.out)
        except Exception as exc:  # noqa: BLE001 - the report is a view; training matters
            log.warning("could not write %s: %s", self.out / "report.html", exc)

    def _validate(self, logs: LossLog | None) -> None:
        """Validate on rank 0 (the others wait for its values), log the values as a row
        of their own, show them in the progress bar and rewrite the report."""

        def measure() -> dict[str, float]:
            t0 = time.perf_counter()
            try:
                values = self.validator.run(self.step, self.task.exports())
            finally:
                self.task.train()
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            log.info("validation at step %d (%.1f s): %s", self.step,
                     time.perf_counter() - t0, shown or "no values")
            return values

        values = self._on_main(measure)
        self._val_shown = {k.removeprefix("val_"): f"{v:.4g}" for k, v in values.items()}
        if logs is not None:
            if values:
                logs.write(self.step, values)
            self._write_report()

    def _loop(self, end: int, logs: LossLog | None, bar: tqdm, stop: Any) -> None:
        cfg, main = self.cfg, self.world.is_main
        phase = "data"  # what the loop is doing: reading a batch, in a step, after a step
        bad_stop = ""
        try:
            batches = iter(self._loader()) if self.step < end else iter(())
            for batch in batches:
                if self._note_bad_images(batch) and not bad_stop:
                    bad_stop = bad_reports(batch["bad"])[0]
                signum, stop_for_bad = distributed.max_over_ranks(
                    self.world, [stop.signum, int(bool(bad_stop))])
                if signum:  # before this batch's step: the last one is complete
                    if main:
                        log.warning("%s: stopping at step %d", stop.name or f"signal {signum}",
                                    self.step)
                    self.save()
                    raise Interrupted(signum, self.step)
                if stop_for_bad:
                    self.save()
                    where = bad_stop or "an image on another process"
                    raise BadImageStop(f"{where}; stopped at step {self.step} "
                                       f"(--on-bad-image stop): saved; fix or remove the "
                                       f"file and continue with --resume")
                phase = "step"
                losses = self.task.train_step(batch)
                lr = self.task.optimizers[next(iter(self.task.optimizers))].param_groups[0]["lr"]
                for sched in self.schedulers.values():
                    sched.step()
                self.step += 1
                phase = "after"
                if self.step % cfg.log_every == 0 or self.step == end:
                    losses = distributed.mean_over_ranks(
                        self.world, {**losses, "bad_images": float(self.bad_images)})
                    bad = round(losses.pop("bad_images") * self.world.size)
                    skipped = self.task.skipped_steps
                    if logs is not None:
                        logs.write(self.step, {"lr": lr, **losses, **(
                            {"skipped_steps": skipped} if skipped else {}), **(
                            {"bad_images": bad} if bad else {})})
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()},
                                 **self._val_shown}, refresh=False)
                bar.update(1)
                sampled = bool(cfg.sample_every) and self.step % cfg.sample_every == 0
                if main and (sampled or self.step >= end):  # a grid at the end too
                    self._write_samples(batch)
                if cfg.val_every and (self.step % cfg.val_every == 0 or self.step == self.total):
                    self._validate(logs)  # after the samples, before the save of this step
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()},
                                     **self._val_shown}, refresh=False)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                    self.save()
                if self.step >= end:
                    break
                phase = "data"
            self.save()
        except (TrainingStopped, Aborted):
            raise
        except BaseException:
            self._save_after_error(phase)
            raise

    def _save_after_error(self, phase: str) -> None:
        """Save what the loop has after an exception (see the module docstring)."""
        if self.world.distributed and not self.world.is_main:
            log.error("rank %d failed at step %d; rank 0's last save is kept",
                      self.world.rank, self.step + 1)
            return
        try:
            self.save(together=False)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            log.error("could not save the state after the error: %s", exc)
            return
        path = self.out / RESUME_FILE
        if phase == "step":
            log.error("step %d failed part-way: %s holds the networks as it left them "
                      "(continue with --resume; the failed step is redone)", self.step + 1, path)
        else:
            log.error("training stopped by an error after step %d: saved in %s; continue "
                      "with --resume once the cause is fixed", self.step, path)

    def finish(self) -> None:
        """Leave the torchrun process group (every rank waits for rank 0's last writes)."""
        distributed.shutdown(self.world)


def train(cfg: TrainConfig, stop_after: int | None = None,
          given: Collection[str] | None = None) -> Path:
    """Train with ``cfg``; returns the output folder. See :class:`Trainer`."""
    trainer = Trainer(cfg, stop_after, given)
    out = trainer.run()
    trainer.finish()
    return out
