"""Videos through a translator, frame by frame, with PyAV (``pip install 'img2img[video]'``).

Reader: the frames of the first video stream in presentation order, numbered from 0, as
H x W x 3 uint8 RGB arrays as stored (not rotated), decoded with the stream's own colour
matrix and range; with the audio packets of the file interleaved as they come.

Video writer (:func:`translate_video`): frames are decoded, translated in batches of the
translator's batch size (frames above the tiling limit one at a time, in tiles) and
encoded as they come, so memory holds one batch plus the encoder's look-ahead, never the
clip. The output keeps the input's container, frame timestamps (so the frame count and
rate, variable rates included), time base, pixel aspect ratio, display matrix (rotation
and flips: the pixels are translated as stored, the player rotates them as it did the
input) and colour description; every audio stream is copied packet for packet, without
re-encoding. Video codec: H.264 (libx264, yuv420p, ``crf`` 18) by default, VP9 for WebM
(which cannot hold H.264), or any encoder of the FFmpeg build. 4:2:0 and 4:2:2 formats need
even sizes: an odd output width or height gets one more column or row, a copy of the last
one. The file is written under a temp name in the destination folder and moved into place
only once complete, so a killed run never leaves a playable half file.

Frames writer (:func:`translate_frames`): numbered PNGs ``000001.png``, ... in a folder, each
written atomically and turned upright (the display matrix applied: a PNG has no place for
it, and ``ffmpeg -i clip.mp4 %06d.png`` turns them too). Frames already present are kept,
so a rerun continues where a killed one stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from img2img.data.io import atomic_path, write_image
from img2img.data.paths import check_inside
from img2img.data.video_probe import (
    VideoError,
    VideoInfo,
    describe,
    load_av,
    open_video,
)
from img2img.errors import UsageError
from img2img.inference.tiling import TileOptions, translate_array_tiled
from img2img.inference.translator import Translator

__all__ = ["DEFAULT_CODEC", "DEFAULT_CRF", "VideoOptions", "read_frames", "translate_frames",
           "translate_video", "translate_video_job"]

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


@dataclass
class VideoOptions:
    """How videos are written. ``codec`` None: libx264 (libvpx-vp9 into WebM); ``crf`` None:
    :data:`DEFAULT_CRF` for encoders that have one; ``progress``: a progress bar in frames
    per video; ``frames``: write each video as a folder of numbered PNGs instead;
    ``overwrite``: with ``frames``, redo frames already present."""

    codec: str | None = None
    crf: int | None = None
    progress: bool = True
    frames: bool = False
    overwrite: bool = False

    def check(self) -> None:
        """UsageError for an encoder this FFmpeg build lacks or a ``crf`` it cannot take."""
        if self.codec is None and self.crf is None:
            return
        try:
            av = load_av()
        except VideoError as exc:
            flag = "--codec" if self.codec is not None else "--crf"
            raise UsageError(f"{flag}: {exc}") from None
        if self.codec is not None and not _is_video_encoder(av, self.codec):
            raise UsageError(f"--codec {self.codec}: not a video encoder of this FFmpeg build "
                             f"(available: {', '.join(available_encoders())})")
        if self.crf is not None:
            codecs = {self.codec} if self.codec else {DEFAULT_CODEC, _WEBM_CODEC}
            for name in codecs:
                top = _CRF_MAX.get(name)
                if top is None:
                    raise UsageError(f"--crf: {name} has no constant-quality (crf) mode; "
                                     f"encoders with one: {', '.join(sorted(_CRF_MAX))}")
                if not 0 <= self.crf <= top:
                    raise UsageError(f"--crf {self.crf}: {name} takes 0 to {top}")


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
class Frame:
    """A decoded frame: its number (from 0), its timestamp (None when the file has none)
    in the stream's time base, and its RGB pixels as stored."""

    index: int
    pts: int | None
    image: np.ndarray


def read_frames(container: Any, audio: bool = False) -> Iterator[Any]:
    """:class:`Frame` objects of the first video stream of an open input container, in
    order; with ``audio``, also its audio packets (PyAV ``Packet``), in file order.
    VideoError when the data cannot be decoded."""
    av = load_av()
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    streams = [stream, *container.streams.audio] if audio else [stream]
    index = 0
    try:
        for packet in container.demux(*streams):
            if packet.stream.type != "video":
                if packet.dts is not None:  # not the end-of-stream marker
                    yield packet
                continue
            for frame in packet.decode():
                image = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
                yield Frame(index, frame.pts, image)
                index += 1
    except (av.FFmpegError, ValueError) as exc:
        raise VideoError(f"cannot decode frame {index + 1}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _batches(frames: Iterator[Any], size: int, on_packet: Any = None) -> Iterator[list[Frame]]:
    """Consecutive frames in lists of ``size``; other items go to ``on_packet`` at once."""
    batch: list[Frame] = []
    for item in frames:
        if not isinstance(item, Frame):
            on_packet(item)
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _translate(translator: Translator, images: list[np.ndarray], tiling: TileOptions,
               batch_size: int) -> list[np.ndarray]:
    h, w = images[0].shape[:2]
    tile = tiling.tile_for(h, w, translator.meta.scale)
    if tile is None:
        return translator.translate_arrays(images)
    return [translate_array_tiled(translator, img, tile, tiling.overlap, batch_size)
            for img in images]


# --------------------------------------------------------------------------- video out


def _encoder(options: VideoOptions, suffix: str, av: Any) -> tuple[str, str, dict[str, str]]:
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
    """An output container with the translated video stream and the copied audio."""

    def __init__(self, av: Any, path: Path, suffix: str, source: Any, info: VideoInfo,
                 scale: int, options: VideoOptions) -> None:
        name, self.pix_fmt, opts = _encoder(options, suffix, av)
        self.av = av
        self.out = av.open(str(path), "w", format=_MUXERS[suffix])
        try:
            self._setup(name, opts, source, info, scale)
        except BaseException:
            with suppress(Exception):
                self.out.close()
            raise

    def _setup(self, name: str, opts: dict[str, str], source: Any, info: VideoInfo,
               scale: int) -> None:
        av = self.av
        try:
            vs = self.out.add_stream(name, rate=info.fps, options=opts)
        except ValueError as exc:  # e.g. "'webm' format does not support 'libx264' codec"
            raise VideoError(f"cannot write {name} video: {exc}") from None
        self.size = (info.width * scale, info.height * scale)
        vs.width, vs.height = _even_size(*self.size, self.pix_fmt, av)
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

    def frame(self, image: np.ndarray, pts: int | None) -> None:
        """Encode one translated frame at the input frame's timestamp."""
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

    def close(self) -> None:
        """Flush the encoder and write the trailer."""
        self.out.mux(self.video.encode(None))
        self.out.close()

    def abandon(self) -> None:
        with suppress(Exception):
            self.out.close()


def _bar(options: VideoOptions, total: int | None, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=name, leave=False, dynamic_ncols=True,
                disable=not options.progress)


def translate_video(translator: Translator, src: str | os.PathLike, dst: str | os.PathLike,
                    options: VideoOptions | None = None, tiling: TileOptions | None = None,
                    batch_size: int = 1, root: str | os.PathLike | None = None) -> int:
    """Translate the video ``src`` into the video file ``dst`` (same container format, from
    the suffix); returns the number of frames. ``root``: the folder ``dst`` must resolve
    inside. VideoError (one line) when the input cannot be read or the output written; an
    interruption leaves no file at ``dst``."""
    av = load_av()
    options, tiling = options or VideoOptions(), tiling or TileOptions()
    src, dst = Path(src), Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in _MUXERS:
        raise VideoError(f"cannot write {suffix or 'files without a suffix'} video "
                         f"(use one of {', '.join(sorted(_MUXERS))})")
    source = open_video(src)
    try:
        info = describe(source)
        source.close()
        source = open_video(src)  # describe() decoded the first frame: start again
        check_inside(dst, root)
        count = 0
        with atomic_path(dst) as tmp, _bar(options, info.frames, src.name) as bar:
            try:
                sink = _VideoSink(av, tmp, suffix, source, info, translator.meta.scale,
                                  options)
            except av.FFmpegError as exc:
                raise VideoError(f"cannot write {dst.name}: {_reason(exc)}") from None
            try:
                frames = read_frames(source, audio=True)
                for batch in _batches(frames, batch_size, sink.audio_packet):
                    outs = _translate(translator, [f.image for f in batch], tiling, batch_size)
                    for f, out in zip(batch, outs, strict=True):
                        sink.frame(out, f.pts)
                    count += len(batch)
                    bar.update(len(batch))
                sink.close()
            except av.FFmpegError as exc:
                sink.abandon()
                raise VideoError(f"cannot write {dst.name}: {_reason(exc)}") from None
            except BaseException:
                sink.abandon()
                raise
            check_inside(dst, root)  # again, just before the temp file is moved into place
        return count
    finally:
        source.close()


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


def translate_frames(translator: Translator, src: str | os.PathLike,
                     folder: str | os.PathLike, options: VideoOptions | None = None,
                     tiling: TileOptions | None = None, batch_size: int = 1,
                     root: str | os.PathLike | None = None) -> int:
    """Write the translated frames of the video ``src`` into ``folder`` as numbered PNGs
    (:func:`frame_name`), upright; returns how many were written. Frames already present
    are not redone unless ``options.overwrite``."""
    options, tiling = options or VideoOptions(), tiling or TileOptions()
    src, folder = Path(src), Path(folder)
    source = open_video(src)
    try:
        info = describe(source)
        source.close()
        source = open_video(src)
        check_inside(folder, root)
        written = 0
        with _bar(options, info.frames, src.name) as bar:
            todo = (f for f in read_frames(source) if _wanted(f, folder, options, bar))
            for batch in _batches(todo, batch_size):
                outs = _translate(translator, [f.image for f in batch], tiling, batch_size)
                for f, out in zip(batch, outs, strict=True):
                    path = folder / frame_name(f.index)
                    check_inside(path, root)
                    write_image(path, upright(out, info.display_matrix))
                written += len(batch)
                bar.update(len(batch))
        return written
    finally:
        source.close()


def _wanted(frame: Frame, folder: Path, options: VideoOptions, bar: Any) -> bool:
    if options.overwrite or not (folder / frame_name(frame.index)).exists():
        return True
    bar.update(1)
    return False


def translate_video_job(translator: Translator, src: Path, dst: Path, root: Path | None,
                        options: VideoOptions, tiling: TileOptions, batch_size: int) -> bool:
    """One video of a folder run: into the video file ``dst``, or with ``options.frames``
    into the folder ``dst`` of PNGs. True if something was written (False: every frame was
    already there). VideoError (one line) for what is wrong with this file."""
    if options.frames:
        return translate_frames(translator, src, dst, options, tiling, batch_size, root) > 0
    translate_video(translator, src, dst, options, tiling, batch_size, root)
    return True
