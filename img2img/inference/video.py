"""Videos in and out of a translation run, with PyAV (``pip install 'img2img[video]'``).

``VideoReader`` (``readers.READERS["video"]``): the frames of the first video stream in
presentation order, numbered from 0, decoded lazily as H x W x 3 uint8 RGB arrays as stored
(not rotated), with the stream's own colour matrix and range; every frame carries
``VideoStream`` (the header's ``VideoInfo`` and the frame's timestamp).

``VideoWriter`` (``writers.WRITERS["video"]``): translated frames are encoded as they come
(the run translates them in batches of its batch size, frames above the tiling limit in
tiles), so memory holds one batch plus the encoder's look-ahead, never the clip. The output
keeps the input's container, frame timestamps (so the frame count and rate, variable rates
included), time base, pixel aspect ratio, display matrix (rotation and flips: the pixels are
translated as stored, the player rotates them as it did the input) and colour description;
every audio stream is copied packet for packet, without re-encoding, interleaved with the
frames by time. Video codec: H.264 (libx264, yuv420p, ``crf`` 18) by default, VP9 for WebM
(which cannot hold H.264), or any encoder of the FFmpeg build. 4:2:0 and 4:2:2 formats need
even sizes: an odd output width or height gets one more column or row, a copy of the last
one. The file is written under a temp name in the destination folder and moved into place
only once complete, so a killed run never leaves a playable half file.

``FramesWriter`` (``writers.WRITERS["frames"]``, ``--frames-out``): numbered PNGs
``000001.png``, ... in a folder, each written atomically and turned upright (the display
matrix applied: a PNG has no place for it, and ``ffmpeg -i clip.mp4 %06d.png`` turns them
too). Frames already present are not translated again, so a rerun continues where a killed
one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from img2img.data.io import ImageReadError, ImageWriteError, atomic_path, write_image
from img2img.data.paths import check_inside
from img2img.data.video_probe import (
    VideoError,
    VideoInfo,
    describe,
    is_video_path,
    load_av,
    open_video,
)
from img2img.errors import UsageError
from img2img.inference.frames import Frame, Output, WriteOptions

__all__ = ["DEFAULT_CODEC", "DEFAULT_CRF", "FramesWriter", "VideoReader", "VideoStream",
           "VideoWriter", "available_encoders", "check_encoder", "frame_name", "read_frames",
           "upright"]

DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18
"""x264's "visually lossless" point: the translation, not the encoder, should be what
changes the picture (x264's own default, 23, visibly softens fine texture)."""

_WEBM_CODEC = "libvpx-vp9"
_PIX_FMT = "yuv420p"
# Encoders with a constant-quality ``crf`` option, and its largest value.
_CRF_MAX = {"libx264": 51, "libx264rgb": 51, "libx265": 51, "libvpx": 63, "libvpx-vp9": 63,
            "libaom-av1": 63, "libsvtav1": 63}
_ZERO_BITRATE = {"libvpx", "libvpx-vp9", "libaom-av1"}  # constant quality needs b=0 there
_SUGGESTED = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1", "mpeg4", "ffv1",
              "prores_ks", "png")
_MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
FRAME_DIGITS = 6


def check_encoder(codec: str | None, crf: int | None) -> None:
    """UsageError for an encoder this FFmpeg build lacks or a ``crf`` it cannot take (None,
    None: the defaults, nothing to check and PyAV not needed yet)."""
    if codec is None and crf is None:
        return
    try:
        av = load_av()
    except VideoError as exc:
        flag = "--codec" if codec is not None else "--crf"
        raise UsageError(f"{flag}: {exc}") from None
    if codec is not None and not _is_video_encoder(av, codec):
        raise UsageError(f"--codec {codec}: not a video encoder of this FFmpeg build "
                         f"(available: {', '.join(available_encoders())})")
    if crf is not None:
        for name in {codec} if codec else {DEFAULT_CODEC, _WEBM_CODEC}:
            top = _CRF_MAX.get(name)
            if top is None:
                raise UsageError(f"--crf: {name} has no constant-quality (crf) mode; "
                                 f"encoders with one: {', '.join(sorted(_CRF_MAX))}")
            if not 0 <= crf <= top:
                raise UsageError(f"--crf {crf}: {name} takes 0 to {top}")


def _is_video_encoder(av: Any, name: str) -> bool:
    try:
        return av.Codec(name, "w").type == "video"
    except (ValueError, av.FFmpegError):
        return False


def available_encoders() -> list[str]:
    """Common software video encoders this FFmpeg build offers (for messages)."""
    av = load_av()
    return [n for n in _SUGGESTED if _is_video_encoder(av, n)]


# --------------------------------------------------------------------------- reading


@dataclass
class Decoded:
    """A decoded frame: its number (from 0), its timestamp (None when the file has none)
    in the stream's time base, and its RGB pixels as stored."""

    index: int
    pts: int | None
    image: np.ndarray


def read_frames(container: Any) -> Iterator[Decoded]:
    """The frames of the first video stream of an open input container, in order.
    VideoError when the data cannot be decoded."""
    av = load_av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    index = 0
    try:
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
            yield Decoded(index, frame.pts, image)
            index += 1
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"cannot decode frame {index + 1}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class VideoStream:
    """What a video frame carries for its writer (``Frame.stream``): the stream's header
    (rate, time base, pixel aspect, display matrix, colour, frame count) and the frame's
    timestamp in the stream's time base (None when the file has none)."""

    info: VideoInfo
    pts: int | None = None


class VideoReader:
    """``"video"`` reader: claims the video suffixes (``video_probe.VIDEO_EXTENSIONS``) by
    name and yields each frame as it is decoded (see the module docstring). A file PyAV
    cannot open or decode, or no PyAV, is an ``ImageReadError`` with the reason."""

    stream = True
    kind = "video"

    def claims(self, path: Path) -> bool:
        return is_video_path(path)

    def frames(self, path: Path) -> Iterator[Frame]:
        try:
            container = open_video(path)
            try:
                info = describe(container)  # decodes the first frame: start again after
            finally:
                container.close()
            container = open_video(path)
        except VideoError as exc:
            raise ImageReadError(path, str(exc)) from None
        try:
            for d in read_frames(container):
                yield Frame(path, d.image, index=d.index, kind=self.kind,
                            stream=VideoStream(info, d.pts))
        except VideoError as exc:
            raise ImageReadError(path, str(exc)) from None
        finally:
            container.close()


def _info(frame: Frame) -> VideoInfo | None:
    return frame.stream.info if isinstance(frame.stream, VideoStream) else None


def _bar(progress: bool, total: int | None, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=name, leave=False, dynamic_ncols=True,
                disable=not progress)


# --------------------------------------------------------------------------- video out


def _encoder(options: WriteOptions, suffix: str, av: Any) -> tuple[str, str, dict[str, str]]:
    """(encoder, pixel format, encoder options) for an output with this suffix."""
    name = options.codec or (_WEBM_CODEC if suffix == ".webm" else DEFAULT_CODEC)
    codec = av.Codec(name, "w")
    formats = [f.name for f in codec.video_formats or ()]
    pix_fmt = _PIX_FMT if not formats or _PIX_FMT in formats else formats[0]
    opts: dict[str, str] = {}
    if name in _CRF_MAX:
        opts["crf"] = str(DEFAULT_CRF if options.crf is None else options.crf)
        if name in _ZERO_BITRATE:
            opts["b"] = "0"
    return name, pix_fmt, opts


def _even_size(width: int, height: int, pix_fmt: str, av: Any) -> tuple[int, int]:
    """The size a pixel format can hold: rounded up to its chroma subsampling."""
    fmt = av.VideoFormat(pix_fmt)
    sx, sy = 64 // max(fmt.chroma_width(64), 1), 64 // max(fmt.chroma_height(64), 1)
    return width + (-width) % sx, height + (-height) % sy


class _VideoSink:
    """An output container with the translated video stream and copies of the source's
    audio streams (``size``: the translated frames' width and height)."""

    def __init__(self, av: Any, path: Path, suffix: str, source: Any, info: VideoInfo,
                 size: tuple[int, int], options: WriteOptions) -> None:
        name, self.pix_fmt, opts = _encoder(options, suffix, av)
        self.av = av
        self.out = av.open(str(path), "w", format=_MUXERS[suffix])
        try:
            self._setup(name, opts, source, info, size)
        except BaseException:
            with suppress(Exception):
                self.out.close()
            raise

    def _setup(self, name: str, opts: dict[str, str], source: Any, info: VideoInfo,
               size: tuple[int, int]) -> None:
        av = self.av
        try:
            vs = self.out.add_stream(name, rate=info.fps, options=opts)
        except ValueError as exc:  # e.g. "'webm' format does not support 'libx264' codec"
            raise VideoError(str(exc)) from None
        vs.width, vs.height = _even_size(*size, self.pix_fmt, av)
        vs.pix_fmt = self.pix_fmt
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        if info.sample_aspect_ratio:
            vs.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        self.rgb = av.VideoFormat(self.pix_fmt).is_rgb
        if not self.rgb:
            for key, value in info.colour.items():
                setattr(vs.codec_context, key, value)
        self.colour = info.colour
        if info.display_matrix is not None:
            vs.set_display_matrix(list(info.display_matrix))
        self.video = vs
        self.audio = {}
        for stream in source.streams.audio:
            try:
                copy = self.out.add_stream_from_template(stream)
            except ValueError as exc:  # e.g. PCM audio from a non-standard .mp4
                raise VideoError(f"cannot copy the {stream.codec_context.name} audio: "
                                 f"{exc}") from None
            if "language" in stream.metadata:
                copy.metadata["language"] = stream.metadata["language"]
            self.audio[stream.index] = copy
        self.time_base = info.time_base
        self.step = (max(1, round(1 / (info.fps * info.time_base)))
                     if info.fps else 1)
        self.last: int | None = None

    def audio_packet(self, packet: Any) -> None:
        """Copy one audio packet of the input (remux, no re-encoding)."""
        packet.stream = self.audio[packet.stream.index]
        self.out.mux(packet)

    def frame(self, image: np.ndarray, pts: int | None) -> Fraction:
        """Encode one translated frame at the input frame's timestamp; returns that time
        in seconds."""
        av = self.av
        w, h = self.video.width, self.video.height
        if image.shape[:2] != (h, w):
            image = np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)),
                           mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if not self.rgb:
            frame = frame.reformat(format=self.pix_fmt,
                                   dst_colorspace=self.colour["colorspace"],
                                   dst_color_range=self.colour["color_range"])
        elif self.pix_fmt != "rgb24":
            frame = frame.reformat(format=self.pix_fmt)
        # Keep the input's timing; timestamps must rise strictly for the encoder.
        if pts is None:
            pts = 0 if self.last is None else self.last + self.step
        if self.last is not None and pts <= self.last:
            pts = self.last + 1
        self.last = pts
        frame.pts = pts
        frame.time_base = self.time_base
        self.out.mux(self.video.encode(frame))
        return pts * self.time_base

    def close(self) -> None:
        """Flush the encoder and write the trailer."""
        self.out.mux(self.video.encode(None))
        self.out.close()

    def abandon(self) -> None:
        with suppress(Exception):
            self.out.close()


class _AudioCopy:
    """The audio packets of ``source`` in file order, handed to ``sink`` up to a time, so
    that audio and video stay interleaved (one packet read ahead at most)."""

    def __init__(self, source: Any, sink: _VideoSink) -> None:
        streams = list(source.streams.audio)
        self.sink = sink
        self.packets = (p for p in source.demux(*streams) if p.dts is not None) if streams \
            else iter(())
        self.next: Any = None

    def until(self, seconds: Fraction | None) -> None:
        """Copy the packets that start at or before ``seconds`` (None: all that are left)."""
        while True:
            if self.next is None:
                self.next = next(self.packets, None)
                if self.next is None:
                    return
            p = self.next
            start = p.pts if p.pts is not None else p.dts
            if seconds is not None and start * p.time_base > seconds:
                return
            self.sink.audio_packet(p)
            self.next = None


@dataclass(frozen=True)
class VideoWriter:
    """``"video"`` writer: the translated frames of a video encoded into ``dst`` (its suffix
    names the container) with the source's timing, rotation, pixel aspect and audio (see the
    module docstring). ``options``: the encoder (``configured`` checks it)."""

    options: WriteOptions = field(default_factory=WriteOptions)
    streams = True
    suffixes = frozenset()  # a video keeps its input's name and container; --ext is for images

    def available(self) -> bool:
        return True

    def configured(self, options: WriteOptions) -> VideoWriter:
        """This writer with a run's encoder settings (UsageError for ones it cannot use)."""
        check_encoder(options.codec, options.crf)
        return VideoWriter(options)

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        if dst.suffix.lower() not in _MUXERS:
            return (f"cannot write {dst.suffix or 'files without a suffix'} video "
                    f"(use one of {', '.join(sorted(_MUXERS))})")
        if _info(frame) is None:
            return "not a video stream's frame"
        return None

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        try:
            av = load_av()
        except VideoError as exc:
            raise ImageWriteError(dst, str(exc)) from None
        items = iter(outputs)
        first = next(items, None)
        if first is None:
            return
        info = _info(first.frame)
        assert info is not None, "refuses() let through a frame without a VideoStream"
        try:
            source = open_video(first.frame.source)  # for its audio streams
        except VideoError as exc:
            raise ImageReadError(first.frame.source, str(exc)) from None
        try:
            with atomic_path(dst) as tmp, \
                    _bar(self.options.progress, info.frames, first.frame.source.name) as bar:
                try:
                    sink = _VideoSink(av, tmp, dst.suffix.lower(), source, info,
                                      (first.width, first.height), self.options)
                except (av.FFmpegError, VideoError) as exc:
                    raise ImageWriteError(dst, _write_reason(exc)) from None
                try:
                    audio = _AudioCopy(source, sink)
                    for out in chain([first], items):
                        stream = out.frame.stream
                        audio.until(sink.frame(out.whole(), stream.pts))
                        bar.update(1)
                    audio.until(None)
                    sink.close()
                except av.FFmpegError as exc:
                    sink.abandon()
                    raise ImageWriteError(dst, _write_reason(exc)) from None
                except BaseException:
                    sink.abandon()
                    raise
        finally:
            source.close()


def _write_reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, VideoError) else _reason(exc)


# --------------------------------------------------------------------------- frames out


def upright(image: np.ndarray, matrix: tuple[int, ...] | None) -> np.ndarray:
    """``image`` as a player shows it under FFmpeg's display ``matrix`` (multiples of 90
    degrees and flips; any other matrix leaves the pixels as stored)."""
    if matrix is None:
        return image
    a, b, c, d = (int(np.sign(v)) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    # A source pixel (x, y) shows at (a*x + c*y, b*x + d*y), y pointing down.
    if b == 0 and c == 0 and a and d:
        out = image[:, ::-1] if a < 0 else image
        out = out[::-1] if d < 0 else out
    elif a == 0 and d == 0 and b and c:
        out = image.transpose(1, 0, *range(2, image.ndim))
        out = out[:, ::-1] if c < 0 else out
        out = out[::-1] if b < 0 else out
    else:
        return image
    return np.ascontiguousarray(out)


def frame_name(index: int) -> str:
    """File name of frame ``index`` (from 0): ``000001.png``, ..."""
    return f"{index + 1:0{FRAME_DIGITS}d}.png"


@dataclass(frozen=True)
class FramesWriter:
    """``"frames"`` writer (``--frames-out``): a stream's translated frames as numbered PNGs
    in the folder ``dst`` (:func:`frame_name`), each written atomically and turned upright.
    Frames present are kept (``pending`` drops them before they are translated) unless
    ``options.overwrite``."""

    options: WriteOptions = field(default_factory=WriteOptions)
    streams = True
    suffixes = frozenset()  # writes folders

    def available(self) -> bool:
        return True

    def configured(self, options: WriteOptions) -> FramesWriter:
        """This writer with a run's settings (overwrite, progress)."""
        return FramesWriter(options)

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        return None

    def pending(self, dst: Path, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The frames of ``frames`` whose file is not in ``dst`` yet (all with overwrite)."""
        for frame in frames:
            if self.options.overwrite or not (dst / frame_name(frame.index)).exists():
                yield frame

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        bar = None
        try:
            for out in outputs:
                info = _info(out.frame)
                if bar is None:
                    bar = _bar(self.options.progress, info.frames if info else None,
                               out.frame.source.name)
                path = dst / frame_name(out.frame.index)
                check_inside(path, dst)  # a frame that is a link elsewhere is not followed
                write_image(path, upright(out.whole(), info.display_matrix if info else None))
                bar.update(out.frame.index + 1 - bar.n)  # frames kept count as done
        finally:
            if bar is not None:
                bar.close()
