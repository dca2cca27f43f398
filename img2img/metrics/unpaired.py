"""FID / KID of a folder of outputs against a reference folder or saved statistics.

Unpaired: the two sets are compared as distributions, no file is matched with another. Every
image under a folder counts (subfolders too, hidden files not); a file that cannot be read is
reported and the others are used. See :mod:`img2img.metrics.fid` for the formulas and
:mod:`img2img.metrics.features` for the two preparation modes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from img2img.data.scan import list_images
from img2img.errors import UsageError
from img2img.metrics.features import check_mode, extract_features
from img2img.metrics.fid import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    FeatureStats,
    fid_of,
    kid,
    small_sample_warning,
)
from img2img.metrics.inception_weights import InceptionWeights, load_inception

__all__ = ["UnpairedReport", "evaluate_files", "evaluate_unpaired", "folder_stats",
           "is_stats_file", "score_line"]


def is_stats_file(path: str | os.PathLike[str]) -> bool:
    """True for an existing ``.npz`` file (reference statistics rather than a folder)."""
    p = Path(path)
    return p.suffix.lower() == ".npz" and p.is_file()


@dataclass
class UnpairedReport:
    """Scores, image counts, warnings and per-file problems of one evaluation."""

    scores: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self, **settings: Any) -> dict[str, Any]:
        """JSON-ready summary (``settings`` first)."""
        return {**settings, **self.scores, "counts": self.counts, "warnings": self.warnings,
                "errors": self.errors}


def folder_stats(folder: str | os.PathLike[str], net: torch.nn.Module, mode: str,
                 weights: str, *, device: torch.device | str = "cpu", batch_size: int = 8,
                 quiet: bool = False, desc: str = "features") -> tuple[FeatureStats, list[str]]:
    """Statistics of every image under ``folder`` and the messages of files that failed.

    UsageError when fewer than 2 images could be read (FID and KID need two).
    """
    root = Path(folder)
    paths = list_images(root)
    items = ((p.relative_to(root).as_posix(), p) for p in paths)
    got = extract_features(items, net, mode, device=device, batch_size=batch_size,
                           total=len(paths), desc=desc, quiet=quiet)
    if len(got.names) < 2:
        why = f"; {len(got.errors)} unreadable, first: {got.errors[0]}" if got.errors else ""
        raise UsageError(f"{root}: {len(got.names)} readable images, FID and KID need at "
                         f"least 2{why}")
    return FeatureStats.from_features(got.features, mode, weights), got.errors


def evaluate_unpaired(
    pred: str | os.PathLike[str] | None,
    ref: str | os.PathLike[str],
    *,
    fid: bool = True,
    kid_score: bool = True,
    mode: str = "clean",
    weights_path: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    save_stats: str | os.PathLike[str] | None = None,
    seed: int = 0,
    quiet: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> UnpairedReport:
    """FID and/or KID of the images under ``pred`` against ``ref`` (a folder, or an ``.npz``
    saved before with ``save_stats``).

    ``save_stats`` writes the reference folder's statistics; ``pred`` may then be None (only
    the statistics are made). ``on_warning`` is called with each warning as it arises (small
    sets). Bad requests, missing weights and mismatched statistics raise UsageError.
    """
    check_mode(mode)
    if save_stats is not None and is_stats_file(ref):
        raise UsageError(f"--save-stats needs a reference folder; {ref} is already statistics")
    if pred is None and save_stats is None:
        raise UsageError("nothing to compare: give --pred, or --save-stats to only save stats")
    net, weights = load_inception(weights_path, device)
    report = UnpairedReport()
    report.scores["weights"] = {"file": str(weights.path), "file_sha256": weights.file_sha256,
                                "fingerprint": weights.fingerprint}

    def warn(message: str) -> None:
        if message:
            report.warnings.append(message)
            if on_warning is not None:
                on_warning(message)

    def stats_of(folder: str | os.PathLike[str], label: str) -> FeatureStats:
        stats, errors = folder_stats(folder, net, mode, weights.fingerprint, device=device,
                                     batch_size=batch_size, quiet=quiet, desc=label)
        report.errors.extend(errors)
        return stats

    if is_stats_file(ref):
        ref_stats = FeatureStats.load(ref, mode, weights.fingerprint)
    else:
        ref_stats = stats_of(ref, "ref")
    report.counts["ref"] = ref_stats.count
    if save_stats is not None:
        ref_stats.save(save_stats)
        report.scores["saved_stats"] = str(save_stats)
    if pred is None:
        return report
    pred_stats = stats_of(pred, "pred")
    report.counts["pred"] = pred_stats.count
    if fid:
        warn(small_sample_warning(pred_stats.count, f"--pred {pred}"))
        warn(small_sample_warning(ref_stats.count, f"--ref {ref}"))
        report.scores["fid"] = fid_of(pred_stats, ref_stats)
    if kid_score:
        mean, std = kid(pred_stats.features, ref_stats.features, seed=seed)
        size = min(KID_SUBSET_SIZE, pred_stats.count, ref_stats.count)
        report.scores["kid"] = {"mean": mean, "std": std, "mean_x1000": mean * 1000,
                                "std_x1000": std * 1000, "subsets": KID_SUBSETS,
                                "subset_size": size, "seed": seed}
    return report


def evaluate_files(
    pred: Sequence[tuple[str, str | os.PathLike[str]]],
    ref: str | os.PathLike[str],
    net: torch.nn.Module,
    weights: InceptionWeights,
    *,
    mode: str = "clean",
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    seed: int = 0,
    quiet: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> UnpairedReport:
    """FID and KID of the files ``pred`` (``(name, path)``; e.g. the outputs of one translate
    run, which need not be all of a folder) against ``ref`` (a folder or saved statistics),
    with an Inception already loaded. UsageError when fewer than 2 images a side are read."""
    check_mode(mode)
    report = UnpairedReport()
    if is_stats_file(ref):
        ref_stats = FeatureStats.load(ref, mode, weights.fingerprint)
    else:
        ref_stats, errors = folder_stats(ref, net, mode, weights.fingerprint, device=device,
                                         batch_size=batch_size, quiet=quiet, desc="ref")
        report.errors.extend(errors)
    got = extract_features(pred, net, mode, device=device, batch_size=batch_size,
                           total=len(pred), desc="pred", quiet=quiet)
    report.errors.extend(got.errors)
    if len(got.names) < 2:
        raise UsageError(f"{len(got.names)} readable output images; FID and KID need at least 2")
    pred_stats = FeatureStats.from_features(got.features, mode, weights.fingerprint)
    report.counts.update(ref=ref_stats.count, pred=pred_stats.count)
    for message in (small_sample_warning(pred_stats.count, "the outputs"),
                    small_sample_warning(ref_stats.count, str(ref))):
        if message:
            report.warnings.append(message)
            if on_warning is not None:
                on_warning(message)
    report.scores["fid"] = fid_of(pred_stats, ref_stats)
    mean, std = kid(pred_stats.features, ref_stats.features, seed=seed)
    size = min(KID_SUBSET_SIZE, pred_stats.count, ref_stats.count)
    report.scores["kid"] = {"mean": mean, "std": std, "mean_x1000": mean * 1000,
                            "std_x1000": std * 1000, "subsets": KID_SUBSETS,
                            "subset_size": size, "seed": seed}
    return report


def score_line(report: UnpairedReport, ref: str | os.PathLike[str], mode: str = "clean") -> str:
    """One line: ``FID 12.345, KID x1000 3.210 +- 0.456 (N outputs vs M images of REF, ...)``."""
    k = report.scores["kid"]
    return (f"FID {round(report.scores['fid'], 3) + 0.0:.3f}, KID x1000 {k['mean_x1000']:.3f} "
            f"+- {k['std_x1000']:.3f} ({report.counts['pred']} outputs vs "
            f"{report.counts['ref']} images of {ref}, --fid-mode {mode})")
