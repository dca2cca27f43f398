"""Path safety for every tool that writes a tree, and the names of our temp files.

* :func:`outside_reason` / :func:`check_inside`: does a destination stay inside its output
  folder once symbolic links are resolved (its parent folders, or the destination itself
  when it is a link)? Checked when a run is planned and again just before each write, so
  neither the write nor the ``mkdir`` of its parents can follow a link out of the folder.
* :func:`check_clear_of_inputs`: the output is not inside an input folder, no destination
  lands in one, and no destination resolves onto an input file.
* :func:`temp_name` is the name :func:`~img2img.data.io.atomic_path` gives its temp files
  (``.<name>.<8 hex digits>.tmp`` next to the target); :func:`remove_stale_temps` deletes
  the ones a killed run left behind. A temp file in use holds an advisory ``flock``
  (:func:`lock_temp`, released when its writer finishes or dies), so a second run never
  removes the temp file of a run that is still writing. Without ``fcntl`` (Windows) there
  is no lock and every matching file counts as left over.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path

from img2img.errors import UsageError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "OutsideError",
    "check_clear_of_inputs",
    "check_inside",
    "check_output_folder",
    "is_inside",
    "is_temp_name",
    "lock_temp",
    "outside_reason",
    "real",
    "remove_stale_temps",
    "temp_name",
]

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- containment


def real(path: PathLike) -> Path:
    """Absolute path with every existing symbolic link resolved (missing tails kept as given)."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def is_inside(path: PathLike, folder: PathLike, resolve: bool = True) -> bool:
    """True if ``path`` is ``folder`` or lies below it, after resolving links in both (or,
    with ``resolve=False``, comparing the absolute paths as written)."""
    norm = real if resolve else _absolute
    p, f = norm(path), norm(folder)
    return p == f or f in p.parents


def _absolute(path: PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


class OutsideError(OSError):
    """A destination resolves outside the folder it must be written in."""


def outside_reason(dst: PathLike, root: PathLike) -> str | None:
    """Why writing ``dst`` would leave ``root`` (a link on its way, or ``dst`` itself a link
    pointing elsewhere), as one line naming the file; None when it stays inside."""
    target = real(dst)
    if is_inside(target, root):
        return None
    return f"destination resolves outside the output folder: {dst} -> {target}"


def check_inside(dst: PathLike, root: PathLike | None) -> None:
    """Raise :class:`OutsideError` if ``dst`` resolves outside ``root`` (None: no check)."""
    if root is not None and (reason := outside_reason(dst, root)) is not None:
        raise OutsideError(reason)


def check_output_folder(out: PathLike, flag: str = "--output") -> None:
    """UsageError if ``out`` exists and is not a folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{flag} {out} exists and is not a folder")


def check_clear_of_inputs(out: PathLike, folders: Sequence[tuple[PathLike, str]] = (),
                          files: Iterable[PathLike] = (),
                          destinations: Iterable[PathLike] = (), flag: str = "--output") -> None:
    """UsageError unless writing ``destinations`` below ``out`` leaves every input alone.

    ``folders`` are (input folder, how to name it in the message, e.g. ``"--input in/"``):
    ``out`` must not be inside one, nor may a destination land inside one. No destination
    may resolve onto one of the input ``files``. All comparisons resolve links first.
    """
    roots = [(real(f), label) for f, label in folders]
    out_r = real(out)
    for root, label in roots:
        if out_r == root or root in out_r.parents:
            raise UsageError(f"refusing to write into an input folder: {flag} {out} is inside "
                             f"{label}; choose a folder outside it")
    inputs = {real(f): Path(f) for f in files}
    for dst in destinations:
        d = real(dst)
        if d in inputs:
            raise UsageError(f"refusing to overwrite input file {inputs[d]} (output would be "
                             f"{dst})")
        for root, label in roots:
            if root in d.parents:
                raise UsageError(f"refusing to write {dst}: it is inside the input folder "
                                 f"{label}")


# --------------------------------------------------------------------------- temp files

_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp", re.DOTALL)


def temp_name(name: str) -> str:
    """A fresh temp file name for a target called ``name``: ``.<name>.<8 hex>.tmp``."""
    return f".{name}.{secrets.token_hex(4)}.tmp"


def is_temp_name(name: str) -> bool:
    """True for a name :func:`temp_name` could have made (and nothing else)."""
    return _TEMP.fullmatch(name) is not None


def lock_temp(fd: int) -> bool:
    """Mark the temp file open as ``fd`` as in use until ``fd`` is closed (or the process
    dies); False where advisory locks are not available."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_if_stale(path: str) -> bool:
    """Unlink a temp file unless a live writer holds its lock; True if it was removed."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):  # a link-mode temp: removing it never touches the target
        os.unlink(path)
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a running writer owns it
            except OSError:
                pass  # no locks on this file system: the writer could not lock either
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def remove_stale_temps(root: PathLike) -> int:
    """Delete our leftover temp files (:func:`is_temp_name`) below ``root``; their count.

    Links to folders are not followed and hidden folders are not entered (no output lives
    there); files whose names merely look similar (``.notes.tmp``) are kept, and so is a
    temp file that a running writer still locks. Files that cannot be removed are left.
    """
    removed = 0
    for folder, dirs, names in os.walk(root):  # followlinks=False: never leaves ``root``
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if is_temp_name(name):
                with suppress(OSError):
                    removed += _remove_if_stale(os.path.join(folder, name))
    return removed
