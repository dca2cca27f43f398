"""The shared training loop: schedule, progress, samples, logs, checkpoints, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from torchvision.utils import make_grid
from tqdm import tqdm

from img2img import __version__
from img2img.checkpoint import save_generator
from img2img.config import TrainConfig
from img2img.data.convert import from_tensor
from img2img.data.io import atomic_write_bytes, write_image
from img2img.data.unpaired import CounterSampler
from img2img.engine.logs import LossLog
from img2img.engine.state import RESUME_FILE, load_resume, rng_state, save_resume, set_rng_state
from img2img.runtime import check_precision, resolve_device, seed_everything
from img2img.tasks import task_class

log = logging.getLogger(__name__)

# Published default when neither --steps nor --epochs is given: 100 + 100 epochs.
DEFAULT_EPOCHS = 100


class RunExistsError(RuntimeError):
    """The output folder already holds a run and ``--resume`` was not given."""


def resolve_schedule(cfg: TrainConfig, dataset_len: int) -> tuple[int, int]:
    """Total steps and the number of final steps over which the lr decays linearly to 0.

    ``--steps N`` decays over the last ``--decay-steps`` (default N // 2); ``--epochs N
    --epochs-decay M`` runs N + M epochs, decaying over the last M (default M = N).
    """
    if cfg.steps is not None and cfg.epochs is not None:
        raise ValueError("give either --steps or --epochs, not both")
    if cfg.steps is not None:
        total = cfg.steps
        decay = cfg.decay_steps if cfg.decay_steps is not None else total // 2
    else:
        per_epoch = max(1, dataset_len // cfg.batch_size)
        epochs = cfg.epochs if cfg.epochs is not None else DEFAULT_EPOCHS
        epochs_decay = cfg.epochs_decay if cfg.epochs_decay is not None else epochs
        total = (epochs + epochs_decay) * per_epoch
        decay = epochs_decay * per_epoch
    if total < 1:
        raise ValueError(f"the run must have at least one step (got {total})")
    if not 0 <= decay <= total:
        raise ValueError(f"decay steps ({decay}) must be between 0 and the total ({total})")
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
    """Runs a task's train steps with checkpoints that resume bit-exactly on CPU."""

    def __init__(self, cfg: TrainConfig, stop_after: int | None = None) -> None:
        self.cfg = cfg
        self.stop_after = stop_after
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        check_precision(cfg.precision, self.device)
        seed_everything(cfg.seed)
        cls = task_class(cfg.task)
        cls.apply_defaults(cfg)
        self.task = cls(cfg, self.device)
        if cfg.compile:
            self.task.compile_networks()
        self.dataset = self.task.build_dataset()
        self.total, self.decay = resolve_schedule(cfg, len(self.dataset))
        self.schedulers = {k: LambdaLR(opt, linear_decay(self.total, self.decay))
                           for k, opt in self.task.optimizers.items()}
        self.step = 0

    # --- checkpoints --------------------------------------------------------------------
    def _prepare_out(self) -> None:
        resume_path = self.out / RESUME_FILE
        if self.cfg.resume:
            self._load(resume_path)
        elif resume_path.exists():
            raise RunExistsError(
                f"{self.out} already holds a training run ({RESUME_FILE}); pass --resume to "
                f"continue it or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg.to_dict() | {"version": __version__, "total_steps": self.total,
                                    "decay_steps": self.decay, "device": str(self.device)}
        atomic_write_bytes(self.out / "config.json", json.dumps(cfg, indent=2).encode())

    def _load(self, path: Path) -> None:
        state = load_resume(path)
        if state.get("task") != self.cfg.task:
            raise ValueError(f"{path}: resume file is for task {state.get('task')!r}, "
                             f"not {self.cfg.task!r}")
        self.task.load_state_dict(state["task_state"])
        for k, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][k])
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        log.info("resumed %s at step %d", path, self.step)

    def save(self) -> None:
        """Write the inference generators and the resume file (each atomically)."""
        for name, (net, meta) in self.task.exports().items():
            save_generator(self.out / name, net, meta)
        save_resume(self.out / RESUME_FILE, {
            "version": __version__,
            "task": self.cfg.task,
            "step": self.step,
            "task_state": self.task.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
        })

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
            sampler=CounterSampler(self.step * cfg.batch_size),
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def run(self) -> Path:
        """Train until the schedule (or ``stop_after`` steps of this run) is done."""
        self._prepare_out()
        cfg = self.cfg
        logs = LossLog(self.out, cfg.log_format, cfg.tensorboard)
        end = self.total if self.stop_after is None else min(self.total,
                                                              self.step + self.stop_after)
        bar = tqdm(total=self.total, initial=self.step, disable=cfg.quiet, unit="step",
                   dynamic_ncols=True)
        self.task.train()
        try:
            batches = iter(self._loader()) if self.step < end else iter(())
            for batch in batches:
                losses = self.task.train_step(batch)
                lr = self.task.optimizers[next(iter(self.task.optimizers))].param_groups[0]["lr"]
                for sched in self.schedulers.values():
                    sched.step()
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == end:
                    skipped = self.task.skipped_steps
                    logs.write(self.step, {"lr": lr, **losses, **(
                        {"skipped_steps": skipped} if skipped else {})})
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                bar.update(1)
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._write_samples(batch)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                    self.save()
                if self.step >= end:
                    if not (cfg.sample_every and self.step % cfg.sample_every == 0):
                        self._write_samples(batch)
                    break
            self.save()
        finally:
            bar.close()
            logs.close()
        return self.out


def train(cfg: TrainConfig, stop_after: int | None = None) -> Path:
    """Train with ``cfg``; returns the output folder. See :class:`Trainer`."""
    return Trainer(cfg, stop_after).run()
