"""Validation during training (``--val-every``): measure the generators, keep the best one.

The task says what to validate (:mod:`img2img.tasks.validation`); a :class:`Validator`
translates each set's inputs with the current exported generator through the toolkit's
:class:`~img2img.inference.translator.Translator` (eval mode, no gradients, float32,
whole images) and measures:

* ``val_fid_<dir>`` and ``val_kid_<dir>`` (the KID mean) of the outputs against the
  reference images, clean-fid's protocol (:mod:`img2img.metrics.features`), when
  ``--val-metric`` is fid or kid; the reference's Inception features are computed once per
  run and kept in memory and in ``resume.pt``, where a resumed run reuses them while the
  reference files (paths, sizes, times) and the weights are unchanged;
* ``val_psnr_<dir>`` and ``val_ssim_<dir>`` of each output against its target when the data
  is paired (pix2pix: all channels; super-resolution: Y with a border of ``scale``, logged
  as ``val_psnr`` / ``val_ssim``).

The best generator by the chosen metric (lower FID/KID, higher PSNR/SSIM; a tie keeps the
earlier) is written as ``NAME.best.safetensors`` next to ``NAME.safetensors``, its metadata
``extra`` naming ``best_step``, ``best_metric``, ``best_value`` and ``best_protocol``. The
record of the best so far travels in ``resume.pt``; a resumed run whose validation is
measured differently (another metric, image count, reference or weights: the *protocol*)
warns and starts a new record, since the values would not compare.

An input that cannot be read or measured is left out with a warning (once per file); the
Inception weights are loaded when the validator is built, so a missing file stops the run
before its first step.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from img2img.checkpoint import GeneratorMeta, save_generator
from img2img.config import TrainConfig
from img2img.data.io import ImageReadError
from img2img.engine.distributed import unwrap
from img2img.errors import UsageError
from img2img.inference.translator import Translator
from img2img.metrics.features import extract_features
from img2img.metrics.fid import FeatureStats, FIDError, fid_of, kid, small_sample_warning
from img2img.metrics.inception_weights import load_inception
from img2img.metrics.paired import evaluate_pair
from img2img.tasks.validation import (
    HIGHER_IS_BETTER,
    INCEPTION_METRICS,
    METRICS,
    PAIRED_METRICS,
    ValSet,
)

__all__ = ["BEST_SUFFIX", "FID_MODE", "Validator", "best_name", "metric_key"]

log = logging.getLogger(__name__)

FID_MODE = "clean"  # clean-fid's preparation, the protocol of CUT and clean-fid's tables
BEST_SUFFIX = ".best.safetensors"
FEATURE_BATCH = 8


def best_name(export: str) -> str:
    """``G_A2B.safetensors`` -> ``G_A2B.best.safetensors``."""
    return export.removesuffix(".safetensors") + BEST_SUFFIX


def metric_key(metric: str, label: str) -> str:
    """The logged key: ``val_fid_A2B``, or ``val_psnr`` for a set without a label."""
    return f"val_{metric}_{label}" if label else f"val_{metric}"


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _file_facts(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return str(path), -1, -1
    return str(path), st.st_size, st.st_mtime_ns


class Validator:
    """Validates ``task``'s exported generators as ``cfg`` asks and keeps the best ones in
    ``out``. Building it lists the validation data and loads the Inception weights (FID/KID);
    UsageError when the request cannot be met (no such data, a metric the data cannot give,
    missing weights)."""

    def __init__(self, task: Any, cfg: TrainConfig, device: torch.device, out: Path) -> None:
        metric = cfg.val_metric or task.default_val_metric
        if metric not in METRICS:
            raise UsageError(f"--val-metric must be one of {', '.join(METRICS)}, "
                             f"not {metric!r}")
        self.sets: list[ValSet] = task.validation_sets(cfg.val_data, cfg.val_max)
        if metric in PAIRED_METRICS and not all(s.paired for s in self.sets):
            raise UsageError(f"--val-metric {metric}: the {task.name} task's validation "
                             f"images have no targets to compare with; use fid or kid")
        self.metric, self.device, self.out = metric, device, Path(out)
        self.inception = metric in INCEPTION_METRICS
        self.net: nn.Module | None = None
        self.fingerprint = ""
        if self.inception:
            for s in self.sets:
                refs = len(s.reference) if s.reference is not None else len(s.names)
                if min(len(s.names), refs) < 2:
                    raise UsageError(f"--val-every: FID/KID need at least 2 images a side; "
                                     f"{s.source}: {len(s.names)}, {s.ref_source}: {refs}")
            self.net, weights = load_inception(cfg.inception_weights, device)
            self.fingerprint = weights.fingerprint
        self.reference: dict[str, FeatureStats] = {}
        self.best: dict[str, dict[str, Any]] = {}
        self._warned: set[str] = set()
        for s in self.sets:
            ref = f" against {s.ref_source}" if self.inception else ""
            log.info("validation of %s: %s in %s%s", s.export, self.protocol(s), s.source, ref)
        for name in sorted(set(task.exports()) - {s.export for s in self.sets}):
            log.warning("%s is not validated: no validation images for it", name)

    # --- what is measured ---------------------------------------------------------------
    def key(self, s: ValSet) -> str:
        """The key that picks the best checkpoint of ``s`` (e.g. ``val_fid_A2B``)."""
        return metric_key(self.metric, s.label)

    def _ref_names(self, s: ValSet) -> list[str]:
        if s.reference is None:
            return s.names
        root = Path(s.ref_source)
        return [p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
                for p in s.reference]

    def protocol(self, s: ValSet) -> str:
        """How ``s`` is measured: values under the same protocol compare, others do not.
        Folders are not part of it (``--data`` may move on resume); the file names are."""
        text = f"{self.key(s)} on {len(s.names)} images"
        names = [*s.names]
        if self.inception:
            refs = self._ref_names(s)
            names += ["|", *refs]
            text += (f" against {len(refs)} reference images (fid-mode {FID_MODE}, weights "
                     f"{self.fingerprint[:12]})")
        if s.paired:
            text += f", PSNR/SSIM {'on Y' if s.y_channel else 'on all channels'} with a " \
                    f"border of {s.crop_border}"
        return f"{text}; files {_digest(*names)[:12]}"

    def _reference_key(self, s: ValSet) -> str:
        return _digest(FID_MODE, self.fingerprint, *map(_file_facts, s.ref_files))

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            log.warning("validation: %s (left out)", message)

    # --- running ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Inception statistics of every reference not restored from the resume file."""
        if not self.inception:
            return
        for s in self.sets:
            if s.export in self.reference:
                continue
            t0 = time.perf_counter()
            got = extract_features(s.reference_items(), self.net, FID_MODE, device=self.device,
                                   batch_size=FEATURE_BATCH, quiet=True)
            for message in got.errors:
                self._warn(message)
            if len(got.names) < 2:
                raise UsageError(f"--val-every: {len(got.names)} readable reference images in "
                                 f"{s.ref_source}; FID/KID need at least 2")
            self.reference[s.export] = FeatureStats.from_features(got.features, FID_MODE,
                                                                  self.fingerprint)
            log.info("validation reference for %s: %d images of %s in %.1f s", s.export,
                     len(got.names), s.ref_source, time.perf_counter() - t0)
            warning = small_sample_warning(min(len(got.names), len(s.names)),
                                           f"the validation of {s.export}")
            if warning:
                log.info("%s", warning.removeprefix("warning: "))

    def run(self, step: int, exports: dict[str, tuple[nn.Module, GeneratorMeta]]
            ) -> dict[str, float]:
        """Measure every set with the generators of ``exports`` (``Task.exports()``), write
        the new best checkpoints; returns the logged values. The nets are left in eval mode:
        the caller puts them back in training mode."""
        self.prepare()
        values: dict[str, float] = {}
        for s in self.sets:
            net, meta = exports[s.export]
            values.update(self._measure(s, unwrap(net), meta))
        self._keep_best(step, values, exports)
        return values

    def _measure(self, s: ValSet, net: nn.Module, meta: GeneratorMeta) -> dict[str, float]:
        translator = Translator(net, meta, self.device)  # float32, eval mode
        scores: dict[str, list[float]] = {m: [] for m in PAIRED_METRICS}

        def outputs():  # noqa: ANN202 - generator of (name, output image)
            for i, name in enumerate(s.names):
                try:
                    image, target = s.load(i)
                    out = translator.translate_arrays([image])[0]
                except ImageReadError as exc:
                    self._warn(str(exc))
                    continue
                except ValueError as exc:  # not an image the translator takes
                    self._warn(f"{s.source}/{name}: {exc}")
                    continue
                if target is not None:
                    try:
                        pair = evaluate_pair(out, target, s.y_channel, s.crop_border)
                    except ValueError as exc:  # size or sample type mismatch
                        self._warn(f"{s.source}/{name}: {exc}")
                    else:
                        for m in PAIRED_METRICS:
                            scores[m].append(pair[m])
                yield name, out

        values: dict[str, float] = {}
        if self.inception:
            got = extract_features(outputs(), self.net, FID_MODE, device=self.device,
                                   batch_size=FEATURE_BATCH, quiet=True)
            for message in got.errors:
                self._warn(message)
            if len(got.names) >= 2:
                stats = FeatureStats.from_features(got.features, FID_MODE, self.fingerprint)
                ref = self.reference[s.export]
                try:
                    values[metric_key("fid", s.label)] = fid_of(stats, ref)
                except FIDError as exc:
                    log.warning("validation: no FID for %s: %s", s.export, exc)
                values[metric_key("kid", s.label)] = kid(stats.features, ref.features)[0]
            else:
                log.warning("validation: only %d output(s) of %s; no FID/KID", len(got.names),
                            s.export)
        else:
            for _ in outputs():
                pass
        for m in PAIRED_METRICS:
            if scores[m]:
                values[metric_key(m, s.label)] = float(np.mean(scores[m]))
        return values

    def _better(self, value: float, old: float) -> bool:
        return value > old if self.metric in HIGHER_IS_BETTER else value < old

    def _keep_best(self, step: int, values: dict[str, float],
                   exports: dict[str, tuple[nn.Module, GeneratorMeta]]) -> None:
        for s in self.sets:
            key, protocol = self.key(s), self.protocol(s)
            value = values.get(key)
            if value is None or math.isnan(value):
                continue
            old = self.best.get(s.export)
            if old is not None and not self._better(value, old["value"]):
                continue
            net, meta = exports[s.export]
            extra = {**meta.extra, "best_step": step, "best_metric": key,
                     "best_value": float(value), "best_protocol": protocol}
            path = self.out / best_name(s.export)
            save_generator(path, unwrap(net), replace(meta, extra=extra))
            self.best[s.export] = {"key": key, "value": float(value), "step": step,
                                   "protocol": protocol}
            log.info("best %s so far: %s %.4g at step %d (%s)", s.export, key, value, step,
                     path.name)

    # --- resume -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The best-so-far records and the reference features (for ``resume.pt``)."""
        by_export = {s.export: s for s in self.sets}
        return {
            "best": {k: dict(v) for k, v in self.best.items()},
            "reference": {k: {"key": self._reference_key(by_export[k]),
                              "features": torch.from_numpy(v.features.copy())}
                          for k, v in self.reference.items() if k in by_export},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; records of another protocol are dropped (warning),
        reference features of changed files or weights are recomputed."""
        for s in self.sets:
            old = (state.get("best") or {}).get(s.export)
            if isinstance(old, dict):
                if old.get("protocol") == self.protocol(s):
                    self.best[s.export] = dict(old)
                else:
                    log.warning("%s: the best so far (%s %.4g at step %s) was measured as "
                                "'%s'; this run measures '%s', so the record restarts and "
                                "%s is replaced at the next validation", s.export,
                                old.get("key"), float(old.get("value", math.nan)),
                                old.get("step"), old.get("protocol"), self.protocol(s),
                                best_name(s.export))
            ref = (state.get("reference") or {}).get(s.export)
            if (self.inception and isinstance(ref, dict)
                    and ref.get("key") == self._reference_key(s)
                    and torch.is_tensor(ref.get("features"))):
                feats = ref["features"].numpy().astype(np.float32)
                self.reference[s.export] = FeatureStats.from_features(feats, FID_MODE,
                                                                      self.fingerprint)
