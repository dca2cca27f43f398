"""GeoTIFF translation and windowed TIFF writing through rasterio (the ``geo`` extra).

Which TIFFs take this path: ``.tif``/``.tiff`` inputs that carry GeoTIFF georeferencing tags
(geokeys / CRS, pixel scale, tie points, a transformation matrix or RPCs; found by
``is_georeferenced``), and plain TIFFs with more pixels than ``data.io`` decodes whole
(``--max-image-pixels``; the folder reader sends them here when the output is a TIFF). Other
plain TIFFs are ordinary images (``data.io``). Without rasterio, a georeferenced TIFF fails
with the install hint instead of silently losing its georeferencing. Georeferencing held only
in sidecar files (``.tfw``, ``.aux.xml``) is not looked for. Palette and CMYK rasters are
refused (their samples are not colours a model takes).

What the output keeps: CRS, nodata, band count (unless ``extra_bands="drop"``), band
descriptions, colour interpretation, tags, scales/offsets/units, dtype and the compression
(``DEFLATE`` when the input has none, or JPEG on non-8-bit data, with the input's
predictor); the affine transform is scaled so the bounds stay the same and the pixel size
shrinks by the model's scale (GCPs are scaled likewise; RPCs are not carried over, with a
warning). Large outputs are tiled
(256x256 blocks) and written as BigTIFF when needed (``BIGTIFF=IF_SAFER``).

Bands: ``bands`` (1-based) feed the model, by default the first ``in_channels`` bands; one
band into a 3-channel model is replicated and the output turned back into one band (as for
grayscale images). The other bands are upscaled with bicubic interpolation or dropped.
Samples are normalised by ``data_range`` (default: the dtype's maximum), never guessed from
the pixels; the output is converted back with the same range and clipped to it. Pixels that
are ``nodata`` in all input bands stay ``nodata`` in all output bands. Only uint8 and
uint16 rasters are supported; input is read and output written window by window, so memory
is bounded by the tile size (see ``tiling``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from img2img.data.convert import max_value
from img2img.data.io import atomic_path
from img2img.errors import UsageError
from img2img.extras import install_hint, require
from img2img.inference.bands import BandAssembler, ModelReader, Sink
from img2img.inference.frames import Frame, Output, single_output
from img2img.inference.tile_layout import TileOptions
from img2img.inference.tiling import TiledModel, TileStats, translate_large

log = logging.getLogger("img2img")

TIFF_EXTENSIONS = (".tif", ".tiff")
EXTRA_BANDS = ("bicubic", "drop")
INSTALL_HINT = install_hint("geo")
BLOCK = 256
# GeoTIFF / GDAL tags: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory,
# RPCCoefficient.
_GEO_TAGS = frozenset({33550, 33922, 34264, 34735, 50844})


class GeoTiffError(Exception):
    """A GeoTIFF cannot be translated (rasterio missing, unsupported bands or sample type)."""


def require_rasterio() -> ModuleType:
    """Import rasterio or raise GeoTiffError with the install hint."""
    return require("rasterio", "geo", "GeoTIFF support", error=GeoTiffError)


def rasterio_available() -> bool:
    """True if the ``geo`` extra (rasterio) is installed."""
    try:
        require_rasterio()
    except GeoTiffError:
        return False
    return True


@contextmanager
def _no_georef_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no geotransform.*")
        yield


def _first_ifd_tags(path: str | os.PathLike) -> set[int] | None:
    """Tag numbers of a TIFF's first image directory (classic or BigTIFF); None if the file
    is not a TIFF or is cut short."""
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return None
        endian = "little" if head[:2] == b"II" else "big"
        version = int.from_bytes(head[2:4], endian)
        if version == 42:
            offset, count_size, entry_size = int.from_bytes(head[4:8], endian), 2, 12
        elif version == 43 and len(head) == 16:
            offset, count_size, entry_size = int.from_bytes(head[8:16], endian), 8, 20
        else:
            return None
        f.seek(offset)
        raw = f.read(count_size)
        if len(raw) < count_size:
            return None
        n = int.from_bytes(raw, endian)
        entries = f.read(n * entry_size)
        if len(entries) < n * entry_size:
            return None
    return {int.from_bytes(entries[i : i + 2], endian) for i in range(0, len(entries), entry_size)}


def is_georeferenced(path: str | os.PathLike) -> bool:
    """True if ``path`` is a ``.tif``/``.tiff`` file whose first image carries GeoTIFF tags.

    Only the TIFF header and first directory are read (no rasterio or GDAL needed, safe in
    threads). Raises GeoTiffError for a georeferenced TIFF when rasterio is missing; any
    read problem gives False (the image reader then reports it).
    """
    if os.path.splitext(os.fspath(path))[1].lower() not in TIFF_EXTENSIONS:
        return False
    try:
        tags = _first_ifd_tags(path)
    except OSError:
        return False
    if not tags or not tags & _GEO_TAGS:
        return False
    require_rasterio()
    return True


@dataclass(frozen=True)
class GeoOptions:
    """``bands``: 1-based model bands (None: the first ``in_channels``); ``extra_bands``:
    ``bicubic`` or ``drop``; ``data_range``: sample value mapped to 1.0 (None: dtype max)."""

    bands: tuple[int, ...] | None = None
    extra_bands: str = "bicubic"
    data_range: float | None = None

    def __post_init__(self) -> None:
        if self.extra_bands not in EXTRA_BANDS:
            raise UsageError(f"extra bands must be one of {', '.join(EXTRA_BANDS)}, "
                             f"got {self.extra_bands!r}")
        if self.bands is not None:
            if not self.bands or min(self.bands) < 1:
                raise UsageError(f"bands are 1-based band numbers, got {self.bands}")
            if len(set(self.bands)) != len(self.bands):
                raise UsageError(f"bands repeat a band: {self.bands}")
        if self.data_range is not None and not self.data_range > 0:
            raise UsageError(f"data range must be positive, got {self.data_range}")

    def check_model(self, in_channels: int) -> None:
        """Raise UsageError if ``bands`` cannot feed a model with ``in_channels`` inputs."""
        if self.bands is not None and not _fits(len(self.bands), in_channels):
            raise UsageError(f"--bands {','.join(map(str, self.bands))}: the model takes "
                             f"{in_channels} band(s)")

    def plan(self, count: int, in_channels: int) -> tuple[list[int], list[int]]:
        """(model bands, extra bands), 0-based, for a raster of ``count`` bands."""
        bands = self.bands or tuple(range(1, min(count, in_channels) + 1))
        if max(bands) > count:
            raise GeoTiffError(f"band {max(bands)} requested (--bands) but the file has "
                               f"{count} band(s)")
        if not _fits(len(bands), in_channels):
            raise GeoTiffError(f"the model takes {in_channels} band(s), the file has {count}; "
                               f"choose them with --bands")
        model = [b - 1 for b in bands]
        extra = [b for b in range(count) if b not in model] if self.extra_bands == "bicubic" else []
        return model, extra

    def range_for(self, dtype: np.dtype) -> float:
        """The data range used for samples of ``dtype``."""
        peak = max_value(dtype)
        if self.data_range is None:
            return float(peak)
        if self.data_range > peak:
            raise GeoTiffError(f"--data-range {self.data_range:g} exceeds the {dtype} maximum "
                               f"{peak}")
        return float(self.data_range)


def _fits(bands: int, in_channels: int) -> bool:
    return bands == in_channels or bands == 1 or (in_channels == 1 and bands == 3)


class RasterioSource:
    """``bands.Source`` reading windows of an open rasterio dataset."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.height, self.width, self.count = ds.height, ds.width, ds.count
        self.dtype = np.dtype(ds.dtypes[0])

    def read(self, y0: int, y1: int, x0: int, x1: int, bands: Sequence[int]) -> np.ndarray:
        from rasterio.windows import Window

        data = self.ds.read([b + 1 for b in bands], window=Window(x0, y0, x1 - x0, y1 - y0))
        return np.moveaxis(data, 0, -1)


class RasterioSink:
    """``bands.Sink`` writing rows to a rasterio dataset in whole blocks of rows.

    Rows are buffered until a block row is complete, so no compressed block is written
    twice (GDAL would append a rewritten block to the file). Call ``flush`` at the end.
    """

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.block = max(1, ds.block_shapes[0][0])
        self.pending: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0

    def write(self, y0: int, rows: np.ndarray) -> None:
        if y0 != self.written + self.buffered:
            raise ValueError(f"rows must arrive in order: got row {y0}, expected "
                             f"{self.written + self.buffered}")
        self.pending.append(rows)
        self.buffered += rows.shape[0]
        if self.buffered >= self.block:
            self._write(self.buffered // self.block * self.block)

    def flush(self) -> None:
        """Write the rows still buffered."""
        if self.buffered:
            self._write(self.buffered)

    def _write(self, n: int) -> None:
        from rasterio.windows import Window

        data = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.ds.write(np.moveaxis(data[:n], -1, 0), window=Window(0, self.written,
                                                                  data.shape[1], n))
        rest = data[n:]
        self.pending = [rest] if len(rest) else []
        self.written += n
        self.buffered -= n


def _layout(width: int, height: int) -> dict[str, Any]:
    if max(width, height) <= BLOCK:
        return {"tiled": False}
    return {"tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK}


def _scaled_transform(transform: Any, scale: int) -> Any:
    from affine import Affine

    step = Affine.scale(1 / scale)
    return transform @ step if hasattr(Affine, "__matmul__") else transform * step


def _profile(src: Any, scale: int, count: int) -> dict[str, Any]:
    """Creation options of the output for ``src`` upscaled by ``scale``."""
    dtype = np.dtype(src.dtypes[0])
    compress = src.compression.value if src.compression is not None else "DEFLATE"
    if compress.upper() == "JPEG" and dtype != np.uint8:
        compress = "DEFLATE"
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": src.width * scale, "height": src.height * scale,
        "count": count, "dtype": dtype.name, "nodata": src.nodata, "compress": compress,
        "BIGTIFF": "IF_SAFER", **_layout(src.width * scale, src.height * scale),
    }
    predictor = src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR")
    if predictor and compress.upper() in ("DEFLATE", "LZW", "ZSTD", "LZMA"):
        profile["predictor"] = int(predictor)
    if src.interleaving is not None:
        profile["interleave"] = src.interleaving.value.lower()
    if src.crs is not None:
        profile["crs"] = src.crs
    if not src.transform.is_identity:
        profile["transform"] = _scaled_transform(src.transform, scale)
    if count == src.count and src.photometric is not None:
        profile["photometric"] = src.photometric.value
    return profile


def _copy_metadata(src: Any, dst: Any, order: Sequence[int], scale: int) -> None:
    """Dataset and band metadata of ``src`` bands ``order`` (0-based) onto ``dst``."""
    from rasterio.control import GroundControlPoint

    dst.update_tags(**src.tags())
    for j, b in enumerate(order, start=1):
        if src.descriptions[b]:
            dst.set_band_description(j, src.descriptions[b])
        if src.tags(b + 1):
            dst.update_tags(j, **src.tags(b + 1))
    dst.scales = [src.scales[b] for b in order]
    dst.offsets = [src.offsets[b] for b in order]
    dst.units = [src.units[b] or "" for b in order]
    try:
        dst.colorinterp = [src.colorinterp[b] for b in order]
    except Exception:  # noqa: BLE001 - some combinations are refused by GDAL; not essential
        pass
    if src.rpcs is not None:
        log.warning("%s: RPC coefficients are not carried over to the upscaled output",
                    src.name)
    gcps, gcp_crs = src.gcps
    if gcps and src.transform.is_identity:
        dst.gcps = ([GroundControlPoint(row=g.row * scale, col=g.col * scale, x=g.x, y=g.y,
                                        z=g.z, id=g.id, info=g.info) for g in gcps], gcp_crs)


def _check_colour_model(src: Any) -> None:
    """Raise GeoTiffError for rasters whose samples are not model inputs."""
    from rasterio.enums import ColorInterp, PhotometricInterp

    if ColorInterp.palette in src.colorinterp:
        raise GeoTiffError("a palette TIFF holds colour indices, not colours; expand it to RGB "
                           "first (e.g. gdal_translate -expand rgb)")
    if src.photometric == PhotometricInterp.cmyk:
        raise GeoTiffError("CMYK TIFFs are not translated by windows; convert it to RGB first")


def _band_plan(src: Any, options: GeoOptions,
               in_channels: int) -> tuple[list[int], list[int], float]:
    """(model bands, extra bands, data range) a run uses for the open raster ``src``;
    GeoTiffError for a raster it cannot take."""
    _check_colour_model(src)
    dtypes = set(src.dtypes)
    if len(dtypes) != 1 or np.dtype(src.dtypes[0]) not in (np.uint8, np.uint16):
        raise GeoTiffError(f"unsupported sample type {'/'.join(sorted(dtypes))} "
                           f"(uint8 and uint16 rasters only)")
    model, extra = options.plan(src.count, in_channels)
    return model, extra, options.range_for(np.dtype(src.dtypes[0]))


@contextmanager
def open_model_reader(path: str | os.PathLike, options: GeoOptions | None,
                      in_channels: int) -> Iterator[ModelReader]:
    """The raster ``path`` open as the model input a run reads from it (the same bands and
    data range, by windows: nothing is read until ``read``). Raises GeoTiffError for a
    raster the run cannot take, OSError (rasterio's) for an unreadable file."""
    rasterio = require_rasterio()
    with _no_georef_warning(), rasterio.open(path) as src:
        model, _, data_range = _band_plan(src, options or GeoOptions(), in_channels)
        yield ModelReader(RasterioSource(src), model, in_channels, data_range)


class GeoTiffReader:
    """Reader (``inference.readers``) of georeferenced TIFFs: one frame left on disk, read
    by windows when it is translated (``raster_output``)."""

    stream = False
    kind = None  # claimed by its header: the frame names its kind

    def claims(self, path: Path) -> bool:
        return is_georeferenced(path)

    def frames(self, path: Path) -> Iterator[Frame]:
        yield Frame(path, kind="geotiff")


def raster_output(translator: TiledModel, frame: Frame, options: GeoOptions | None = None,
                  tiling: TileOptions | None = None, batch_size: int = 4,
                  progress: Callable[[int], None] | None = None) -> Output:
    """The translation of the raster ``frame.source``, read by windows as the writer takes
    its rows. Small rasters run as one tile (same result as untiled inference); larger ones
    (or any with ``tiling.tile``) in tiles. Raises GeoTiffError for rasters it cannot take."""
    rasterio = require_rasterio()
    options, tiling = options or GeoOptions(), tiling or TileOptions()
    meta, s = translator.meta, translator.meta.scale
    with _no_georef_warning(), rasterio.open(frame.source) as src:
        model, extra, data_range = _band_plan(src, options, meta.in_channels)
        height, width, dtype = src.height, src.width, np.dtype(src.dtypes[0])
    tile = tiling.tile_for(height, width, s) or max(height, width)
    order = tuple(sorted(model + extra))

    def produce(sink: Sink) -> TileStats:
        with _no_georef_warning(), rasterio.open(frame.source) as src:
            source = RasterioSource(src)
            writer = BandAssembler(source, sink, s, model, extra, data_range, src.nodata)
            reader = ModelReader(source, model, meta.in_channels, data_range)
            return translate_large(translator, reader, writer, tile, tiling.overlap,
                                   batch_size, progress)

    return Output(frame, (height * s, width * s, len(order)), dtype, produce=produce,
                  bands=order)


class GeoTiffWriter:
    """``"geotiff"`` writer (``inference.writers``): a raster output written window by window
    into a TIFF with the source's georeferencing and metadata (see the module docstring)."""

    streams = True
    suffixes = frozenset(TIFF_EXTENSIONS)

    def available(self) -> bool:
        return True

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        if dst.suffix.lower() in TIFF_EXTENSIONS:
            return None
        if frame.note:  # a plain TIFF too large to decode whole
            return f"{frame.note}, or translate it by windows into a .tif output (--ext tif)"
        return (f"a georeferenced TIFF needs a .tif output to keep its georeferencing, "
                f"not {dst.suffix}")

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        rasterio = require_rasterio()
        out = single_output(outputs, dst)
        with _no_georef_warning(), rasterio.open(out.frame.source) as src:
            scale = out.height // src.height
            profile = _profile(src, scale, out.channels)
            with atomic_path(dst) as tmp, rasterio.open(tmp, "w", **profile) as ds:
                _copy_metadata(src, ds, out.bands, scale)
                sink = RasterioSink(ds)
                out.into(sink)
                sink.flush()


class TiffStreamWriter:
    """``"tiff-stream"`` writer: a (non-geo) TIFF written window by window, so no
    output-sized array is ever held. Alpha is stored as unassociated alpha; DEFLATE."""

    streams = True
    suffixes = frozenset(TIFF_EXTENSIONS)

    def available(self) -> bool:
        return rasterio_available()

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        return None

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        rasterio = require_rasterio()
        out = single_output(outputs, dst)
        colour = out.channels - 1 if out.channels in (2, 4) else out.channels
        profile: dict[str, Any] = {
            "driver": "GTiff", "width": out.width, "height": out.height,
            "count": out.channels, "dtype": np.dtype(out.dtype).name, "compress": "DEFLATE",
            "BIGTIFF": "IF_SAFER", "interleave": "pixel",
            "photometric": "RGB" if colour == 3 else "MINISBLACK",
            **_layout(out.width, out.height),
        }
        if colour < out.channels:
            profile["ALPHA"] = "YES"
        with _no_georef_warning(), atomic_path(dst) as tmp, \
                rasterio.open(tmp, "w", **profile) as ds:
            sink = RasterioSink(ds)
            out.into(sink)
            sink.flush()


def translate_geotiff(translator: TiledModel, src_path: str | os.PathLike,
                      dst_path: str | os.PathLike, options: GeoOptions | None = None,
                      tiling: TileOptions | None = None, batch_size: int = 4,
                      progress: Callable[[int], None] | None = None) -> TileStats:
    """Translate a GeoTIFF into ``dst_path`` (written atomically, see the module docstring).

    Small rasters run as one tile (same result as untiled inference); larger ones (or any
    with ``tiling.tile``) in tiles. Raises GeoTiffError, ValueError or rasterio errors.
    """
    out = raster_output(translator, Frame(Path(src_path), kind="geotiff"), options, tiling,
                        batch_size, progress)
    GeoTiffWriter().write(Path(dst_path), [out])
    return out.result
