"""Video files: which suffixes count, and what a file's header says (ffprobe-like, with PyAV).

PyAV (``pip install 'img2img[video]'``, which ships FFmpeg) is imported only when a video is
opened, so image-only users never need it. :func:`probe_video` reads what a translated copy
must keep: size, frame rate and time base, pixel aspect, the display matrix (rotation and
flips; PyAV 18 exposes it on decoded frames, so the first frame is decoded), the colour
description, and the audio streams.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import Any

__all__ = ["INSTALL_HINT", "VIDEO_EXTENSIONS", "VideoError", "VideoInfo", "is_video_path",
           "load_av", "open_video", "probe_video"]

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".avi", ".mkv", ".mov", ".mp4", ".webm"})
"""Suffixes translated as videos (frame by frame, audio copied)."""

INSTALL_HINT = "pip install 'img2img[video]'"


class VideoError(Exception):
    """A video that cannot be read or written; the message is one line naming the problem."""


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has a video suffix (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def load_av() -> ModuleType:
    """The ``av`` module; VideoError with the install line when PyAV is missing."""
    try:
        import av
    except ImportError:
        raise VideoError(f"videos need PyAV: {INSTALL_HINT}") from None
    return av


def open_video(path: str | os.PathLike[str]) -> Any:
    """An input container with at least one video stream (VideoError otherwise)."""
    av = load_av()
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"cannot open as a video: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    return container


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if str(text).strip() else type(exc).__name__


@dataclass(frozen=True)
class VideoInfo:
    """What the header and the first frame of a video say.

    ``frames`` is the header's frame count, or duration x frame rate when the container
    does not store one (Matroska/WebM), or None. ``display_matrix`` is FFmpeg's 3x3 display
    matrix (9 ints) or None; ``rotation`` its counter-clockwise angle in degrees (as PyAV's
    ``VideoFrame.rotation``). ``frames_exact``: ``frames`` is the header's count, not an
    estimate. ``colour`` holds the first frame's ``colorspace``,
    ``color_range``, ``color_primaries`` and ``color_trc`` codes.
    """

    width: int
    height: int
    fps: Fraction | None
    time_base: Fraction
    frames: int | None
    sample_aspect_ratio: Fraction | None
    display_matrix: tuple[int, ...] | None
    rotation: int
    colour: dict[str, int]
    codec: str
    audio_streams: int
    frames_exact: bool = False


_COLOUR = ("colorspace", "color_range", "color_primaries", "color_trc")


def _frame_count(container: Any, stream: Any, fps: Fraction | None) -> tuple[int | None, bool]:
    if stream.frames:
        return int(stream.frames), True
    if stream.duration and stream.time_base and fps:
        return round(stream.duration * stream.time_base * fps), False
    if container.duration and fps:  # microseconds
        return round(Fraction(container.duration, 1_000_000) * fps), False
    return None, False


def _display_matrix(frame: Any) -> tuple[int, ...] | None:
    av = load_av()
    for side in frame.side_data:
        if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            data = bytes(side)
            if len(data) == 36:
                return tuple(int.from_bytes(data[i : i + 4], "little", signed=True)
                             for i in range(0, 36, 4))
    return None


def describe(container: Any) -> VideoInfo:
    """:class:`VideoInfo` of the first video stream of an open input container; decodes its
    first frame (VideoError if there is none), so reopen the file to read the frames."""
    av = load_av()
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    frames, exact = _frame_count(container, stream, fps)
    try:
        first = next(container.decode(stream), None)
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"cannot decode the video: {_reason(exc)}") from None
    if first is None:
        raise VideoError("the video stream holds no frames")
    sar = stream.sample_aspect_ratio
    return VideoInfo(
        width=first.width, height=first.height, fps=Fraction(fps) if fps else None,
        time_base=Fraction(stream.time_base), frames=frames,
        sample_aspect_ratio=Fraction(sar) if sar else None,
        display_matrix=_display_matrix(first), rotation=int(first.rotation),
        colour={k: int(getattr(first, k)) for k in _COLOUR},
        codec=stream.codec_context.name, audio_streams=len(container.streams.audio),
        frames_exact=exact)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path``, read its header and first frame (:class:`VideoInfo`); VideoError with a
    one-line reason for a file that is not a readable video."""
    container = open_video(path)
    try:
        return describe(container)
    finally:
        container.close()
