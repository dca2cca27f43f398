"""Split a folder of images, or two folders of aligned A/B images, into train/val/test.

Layouts (the ones the other tools write and the datasets read; see ``design.md`` "Folders"):

* ``flat`` (one ``--input`` folder): ``ROOT/train``, ``ROOT/val``, ``ROOT/test``, each
  mirroring the input tree. For a folder of ``A|B`` side-by-side images (the pix2pix
  ``combined`` layout) or of high-resolution photos (SRGAN ``--data`` / ``--val-data``).
* ``aligned`` (``--a`` and ``--b``, pairs kept together): ``ROOT/trainA`` + ``trainB``,
  ``valA`` + ``valB``, ``testA`` + ``testB``. Files pair up by relative path without suffix
  (``A/x/1.jpg`` with ``B/x/1.png``, as the pix2pix dataset and ``img2img data combine``
  match them); a pair's two files always land in the same split, each under its own name.
  Unmatched files are left out and listed; several files sharing a stem (``x.jpg`` next to
  ``x.png``) are ambiguous: left out and reported as failed.
* ``unpaired`` (``--a`` and ``--b``, two domains): ``ROOT/trainA trainB testA testB`` (+
  ``valA valB``), the CycleGAN layout; each domain is split on its own, no matching.

**Split.** Within a group (all files; the pairs; or one domain) files rank by
``sha256(f"{seed}:{domain}:{key}")`` with ``key`` the relative path (without suffix for
pairs): the first ``round(n * test_fraction)`` go to test, the next ``round(n *
val_fraction)`` to val, the rest to train. A fraction above 0 gives its split at least one
file, and at least one file always stays in train. The split depends only on the names and
the seed (not on the order of listing or on the disk), so the same command gives the same
split, and adding files moves others only at the cut-offs.

**Write.** Files are placed as they are, not decoded (``img2img data make-unpaired`` checks
and deduplicates): ``mode="copy"`` copies the bytes (mtime kept), ``mode="link"`` makes a hard
link, falling back to a symlink, then a copy. Everything goes into a hidden staging folder in
ROOT (each file through :func:`~img2img.data.io.atomic_path`); only when all files are written
are the split folders moved in, replacing those of an earlier run with ``overwrite``, and
``manifest.json`` (which files went where, and how) is written last. A failure leaves ROOT as
it was. ROOT must be empty or absent (unless ``overwrite``), must not be inside an input, must
not hold an input in a folder it would replace, and none of the entries it would replace may
be a link leading outside ROOT (:mod:`img2img.data.paths`). Inputs are only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from img2img import __version__
from img2img.data.io import atomic_path, atomic_write_bytes
from img2img.data.paths import check_clear_of_inputs, check_output_folder, is_inside, outside_reason
from img2img.data.placing import link_or_copy, remove_entry
from img2img.data.scan import list_images
from img2img.errors import UsageError

__all__ = ["LAYOUTS", "MANIFEST", "MODES", "SPLITS", "SplitError", "SplitOptions", "SplitPlan",
           "SplitReport", "plan_split", "split_counts", "split_dataset", "write_split"]

LAYOUTS = ("flat", "aligned", "unpaired")
SPLITS = ("train", "val", "test")
MODES = ("copy", "link")
MANIFEST = "manifest.json"

Progress = Callable[[int], None]


class SplitError(RuntimeError):
    """Writing the split failed (ROOT is left as it was)."""


@dataclass(frozen=True)
class SplitOptions:
    """One split: ``input`` (one folder) or ``a`` + ``b`` (two), and where they go."""

    out: str
    input: str | None = None
    a: str | None = None
    b: str | None = None
    layout: str | None = None  # None: flat for input, aligned for a + b
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    mode: str = "copy"
    overwrite: bool = False
    workers: int = 4

    def resolved_layout(self) -> str:
        """The layout, with the default for the inputs given."""
        if self.layout is not None:
            return self.layout
        return "flat" if self.input is not None else "aligned"

    def validate(self) -> None:
        """UsageError for inconsistent or out-of-range options."""
        two = self.a is not None or self.b is not None
        if self.input is not None and two:
            raise UsageError("use either --input or --a/--b, not both")
        if self.input is None and not (self.a and self.b):
            raise UsageError("give --input DIR, or --a DIR and --b DIR")
        layout = self.resolved_layout()
        if layout not in LAYOUTS:
            raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if layout == "flat" and self.input is None:
            raise UsageError("--layout flat splits one --input folder; with --a/--b use "
                             "--layout aligned or unpaired")
        if layout != "flat" and self.input is not None:
            raise UsageError(f"--layout {layout} needs --a and --b (two folders)")
        for flag, value in (("--val-fraction", self.val_fraction),
                            ("--test-fraction", self.test_fraction)):
            if not 0.0 <= value < 1.0:
                raise UsageError(f"{flag} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise UsageError(f"--val-fraction + --test-fraction must be below 1 (train keeps "
                             f"the rest), got {self.val_fraction} + {self.test_fraction}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")


@dataclass
class SplitReport:
    """What a split did: files per output folder, inputs left out, the manifest written."""

    counts: dict[str, int]
    unit: str  # "images" or "pairs"
    only_a: list[Path] = field(default_factory=list)
    only_b: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def summary(self, root: str | os.PathLike[str]) -> str:
        """One line for the end of the run."""
        counts = self.counts
        if self.unit == "pairs":  # one count per split: trainA and trainB hold the same pairs
            counts = {s: self.counts[f"{s}A"] for s in SPLITS}
        parts = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        line = f"split: {parts} ({self.unit}) -> {root}"
        if self.only_a or self.only_b:
            line += f"; unmatched, left out: {len(self.only_a)} in A, {len(self.only_b)} in B"
        if self.failed:
            line += f"; {len(self.failed)} failed"
        return line


@dataclass(frozen=True)
class _Job:
    source: Path
    output: str  # "trainA/x/1.png", relative to ROOT


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(val, test) file counts for ``n`` files (module docstring: at least one each when its
    fraction is above 0, at least one left for train)."""
    def share(f: float) -> int:
        return 0 if f <= 0 else max(1, int(n * f + 0.5))

    n_val, n_test = share(val_fraction), share(test_fraction)
    while n_val + n_test > max(n - 1, 0):
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _assign(keys: list[str], domain: str, opts: SplitOptions) -> dict[str, str]:
    """{key: split name} by seeded rank of the keys."""
    def rank(key: str) -> tuple[str, str]:
        return hashlib.sha256(f"{opts.seed}:{domain}:{key}".encode()).hexdigest(), key

    order = sorted(keys, key=rank)
    n_val, n_test = split_counts(len(order), opts.val_fraction, opts.test_fraction)
    names = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(order) - n_val - n_test)
    return dict(zip(order, names, strict=True))


def _root(path: str | None, flag: str) -> Path:
    """The folder given as ``flag``, absolute; UsageError if it is not one."""
    root = Path(os.path.abspath(os.path.expanduser(path or "")))
    if path is None or not root.is_dir():
        raise UsageError(f"{flag} {path}: folder not found")
    return root


def _listed(root: Path, flag: str, path: str | None) -> list[Path]:
    """The images below ``root``; UsageError if there are none."""
    files = list_images(root)
    if not files:
        raise UsageError(f"{flag} {path}: no images found")
    return files


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _by_stem(root: Path, files: list[Path], failed: list[tuple[Path, str]]) -> dict[str, Path]:
    """{relative path without suffix: file}; files sharing a stem go to ``failed``."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        groups.setdefault(PurePosixPath(_rel(root, f)).with_suffix("").as_posix(), []).append(f)
    out: dict[str, Path] = {}
    for key, paths in groups.items():
        if len(paths) == 1:
            out[key] = paths[0]
        else:
            names = ", ".join(p.name for p in paths)
            failed.extend((p, f"ambiguous: several files share the stem {key!r} ({names}); "
                              "left out") for p in paths)
    return out


def _jobs(opts: SplitOptions, layout: str, roots: list[Path]) -> tuple[list[_Job], SplitReport]:
    """The files to place and the report so far."""
    if layout == "flat":
        root = roots[0]
        rels = {_rel(root, f): f for f in _listed(root, "--input", opts.input)}
        where = _assign(list(rels), "", opts)
        jobs = [_Job(f, f"{where[r]}/{r}") for r, f in rels.items()]
        return jobs, SplitReport({s: 0 for s in SPLITS}, "images")
    root_a, root_b = roots
    files_a, files_b = _listed(root_a, "--a", opts.a), _listed(root_b, "--b", opts.b)
    counts = {f"{s}{d}": 0 for s in SPLITS for d in "AB"}
    if layout == "unpaired":
        jobs = []
        for domain, root, files in (("A", root_a, files_a), ("B", root_b, files_b)):
            rels = {_rel(root, f): f for f in files}
            where = _assign(list(rels), domain, opts)
            jobs += [_Job(f, f"{where[r]}{domain}/{r}") for r, f in rels.items()]
        return jobs, SplitReport(counts, "images")
    report = SplitReport(counts, "pairs")
    a = _by_stem(root_a, files_a, report.failed)
    b = _by_stem(root_b, files_b, report.failed)
    keys = sorted(a.keys() & b.keys())
    if not keys:
        raise UsageError(f"no file in --a {opts.a} ({len(files_a)} images) matches a file in "
                         f"--b {opts.b} ({len(files_b)} images) by relative path and name "
                         f"(suffix ignored)")
    report.only_a = sorted(a[k] for k in a.keys() - b.keys())
    report.only_b = sorted(b[k] for k in b.keys() - a.keys())
    where = _assign(keys, "", opts)
    jobs = []
    for k in keys:
        jobs += [_Job(a[k], f"{where[k]}A/{_rel(root_a, a[k])}"),
                 _Job(b[k], f"{where[k]}B/{_rel(root_b, b[k])}")]
    return jobs, report


def _replaced(layout: str) -> list[str]:
    """The entries of ROOT a split of ``layout`` replaces."""
    folders = list(SPLITS) if layout == "flat" else [f"{s}{d}" for s in SPLITS for d in "AB"]
    return [*folders, MANIFEST]


def _check_output(out: Path, inputs: list[Path], layout: str, overwrite: bool) -> None:
    """UsageError unless ROOT can be written without touching an input (module docstring)."""
    check_output_folder(out, "--out")
    check_clear_of_inputs(out, [(i, str(i)) for i in inputs], flag="--out")
    for name in _replaced(layout):
        if (reason := outside_reason(out / name, out)) is not None:
            raise UsageError(f"{reason}; this split would replace it: remove the link or "
                             f"choose another --out")
        for folder in inputs:
            if is_inside(folder, out / name) or is_inside(folder, out / name, resolve=False):
                raise UsageError(f"input {folder} is in {out / name}, which this split would "
                                 f"replace; choose another --out")
    if out.is_dir() and not overwrite:
        with os.scandir(out) as it:
            if next(it, None) is not None:
                names = ", ".join(_replaced(layout))
                raise UsageError(f"--out {out} is not empty; use --overwrite to replace "
                                 f"{names} in it")


def _copy(src: Path, dst: Path) -> None:
    st = os.stat(src)
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))


def _place(src: Path, dst: Path, mode: str) -> str:
    """Copy, or hard link / symlink / copy (the first that works); the method used."""
    if mode == "link":
        return link_or_copy(Path(os.path.realpath(src)), dst, lambda: _copy(src, dst))
    _copy(src, dst)
    return "copy"


def _write(jobs: list[_Job], out: Path, layout: str, opts: SplitOptions,
           progress: Progress | None) -> list[str]:
    """Write into a staging folder in ``out``, then swap its folders in; the method per job."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".split-{secrets.token_hex(4)}"
    try:
        staging.mkdir()

        def one(job: _Job) -> str:
            method = _place(job.source, staging / job.output, opts.mode)
            if progress is not None:
                progress(1)
            return method

        with ThreadPoolExecutor(max_workers=opts.workers) as pool:
            methods = list(pool.map(one, jobs))
        for name in _replaced(layout):
            remove_entry(out / name)
        for name in sorted(p.name for p in staging.iterdir()):
            os.rename(staging / name, out / name)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with suppress(OSError):
                out.rmdir()
        raise
    return methods


@dataclass
class SplitPlan:
    """What :func:`write_split` will do: the files and where each goes."""

    opts: SplitOptions
    layout: str
    out: Path
    inputs: list[Path]
    jobs: list[_Job]
    report: SplitReport


def plan_split(opts: SplitOptions) -> SplitPlan:
    """Check the request and decide every file's split (nothing is written yet).

    Raises UsageError for a bad request: options, missing or empty inputs, an output inside
    an input, a used ROOT without ``overwrite`` (see the module docstring).
    """
    opts.validate()
    layout = opts.resolved_layout()
    out = Path(os.path.abspath(os.path.expanduser(opts.out)))
    roots = ([_root(opts.input, "--input")] if layout == "flat"
             else [_root(opts.a, "--a"), _root(opts.b, "--b")])
    _check_output(out, roots, layout, opts.overwrite)  # before listing a large input
    jobs, report = _jobs(opts, layout, roots)
    for job in jobs:
        report.counts[job.output.split("/", 1)[0]] += 1
    return SplitPlan(opts, layout, out, roots, jobs, report)


def write_split(plan: SplitPlan, progress: Progress | None = None) -> SplitReport:
    """Write ``plan`` into its ROOT (staged, then swapped in; manifest last).

    Raises SplitError when writing fails (ROOT is left as it was). ``progress(n)`` is called
    as files are written.
    """
    opts, layout, out, inputs, jobs, report = (plan.opts, plan.layout, plan.out, plan.inputs,
                                               plan.jobs, plan.report)
    try:
        methods = _write(jobs, out, layout, opts, progress)
    except Exception as exc:  # any failure while writing: report it, ROOT is unchanged
        raise SplitError(f"writing {out} failed: {exc}") from exc
    report.manifest = {
        "tool": "split",
        "version": __version__,
        "inputs": ({"input": str(inputs[0])} if layout == "flat"
                   else {"a": str(inputs[0]), "b": str(inputs[1])}),
        "layout": layout,
        "seed": opts.seed,
        "val_fraction": opts.val_fraction,
        "test_fraction": opts.test_fraction,
        "mode": opts.mode,
        "counts": report.counts,
        "methods": dict(sorted(Counter(methods).items())),
        "left_out": [{"path": str(p), "reason": "no file with the same name in the other "
                      "folder"} for p in (*report.only_a, *report.only_b)]
                    + [{"path": str(p), "reason": r} for p, r in report.failed],
        "files": [{"path": j.output, "source": str(j.source), "method": m}
                  for j, m in zip(jobs, methods, strict=True)],
    }
    text = json.dumps(report.manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / MANIFEST, text.encode("utf-8"))
    return report


def split_dataset(opts: SplitOptions, progress: Progress | None = None) -> SplitReport:
    """:func:`plan_split` then :func:`write_split` (see the module docstring)."""
    return write_split(plan_split(opts), progress)

