"""``translate --precision int8``: the generator statically quantized.

The ResNet generators and SRResNet, from a PyTorch checkpoint on a CPU where oneDNN's int8
convolution runs, are quantized in PyTorch (:mod:`img2img.inference.torch_int8`: faster and
closer to fp32 than this module's recipe, measured there); this module picks the
calibration inputs, the cache entry and the engine. Everything else goes through ONNX
Runtime, as follows. The checkpoint is exported to ONNX (``onnx_export``, parity-checked
against PyTorch), its activation ranges are calibrated on real inputs of the run, and ONNX
Runtime's quantizer rewrites it in the QDQ format (``QuantizeLinear``/``DequantizeLinear``
around each convolution, which ONNX Runtime's x86 kernels run as int8 convolutions, with
VNNI where the CPU has it): weights int8 per output channel, activations uint8 per tensor
(min/max ranges). Weights use their full 8 bits where the CPU sums int8 products in 32 bits
(VNNI, AMX, 64-bit Arm); on x86 CPUs without them (AVX2 or AVX-512 alone: Zen 2/3, Skylake,
Haswell) ONNX Runtime's kernels add pairs of products in saturating 16-bit lanes, so the
weights get 7 bits there (``reduce_range``). Measured on a Zen 3 (AVX2), the trained
resnet_9blocks stand-in on 12 photos at 512x512: 8-bit weights 29.2 dB worst / 38.1 mean
against fp32 (the same graph with its int8 arithmetic emulated in float, on 6 of them: 48.5
/ 51.0, so the loss is the saturation), 7-bit weights 43.6 / 50.0 dB at the same speed
(1.99 against 2.06 s per image; uint8 x uint8 weights: 43.3 / 50.0 dB but 2.73 s).

Kept in float, because quantizing them cost the quality measured in :data:`FAMILIES`:

- the output path: every node from the last convolution to the graph's output (the output
  conv, Tanh, SRResNet's bicubic skip and the final Add);
- for the ResNet generators, the whole decoder from the first upsampling layer on: the
  transposed convolutions' outputs go into instance norm, which scales each channel to unit
  variance, so a per-tensor 8-bit grid that is coarse for a weak channel becomes coarse
  noise in it (a trained resnet_9blocks: 27.5 dB with them quantized, 40.5 dB without,
  both with whole-image calibration; they are ~6% of its operations). Quantizing only the
  output conv: 33.0 dB worst against 42.9 (crop calibration), and slower. Tried on a Zen 4
  (VNNI) with another trained stand-in (this recipe: 37.95 worst / 41.4 mean dB on 12
  photos at 512x512): the decoder quantized as sub-pixel Convs, with each conv before an
  instance norm rescaled and re-centred per output channel from per-channel calibration
  ranges (exact but for the norm's epsilon, so every channel fills the per-tensor grid):
  26.1 dB without the rescaling, 32.4 with it; only the first upsampling conv quantized:
  37.1 / 40.7 dB. The same rescaling of the encoder and residual convs did not help either
  (37.4 / 41.7 dB): the loss is not in weak channels.

Also measured there and dropped: the float transposed convs as four phase Convs (1x1, 1x2,
2x1, 2x2 taps, no zeros) + Concat + DepthToSpace. The convs took 120 ms instead of ONNX
Runtime's ConvTranspose's 202 ms per 512x512 image, but its DepthToSpace (a generic 6-D
transpose, one thread) added 92 ms: 0.91-0.94 s per image became 0.96-1.02 s. Instance
norms as Reshape + LayerNormalization (which ONNX Runtime runs on both threads: 64 instead
of 104 ms) lost it again in the quantizer's extra DequantizeLinear work (38 -> 129 ms):
0.87-0.92 -> 0.92-1.04 s. Percentile (99.999) ranges instead of min/max: 37.5 worst /
42.9 mean dB, and calibration 5 -> 24 s. On a Xeon with AMX (family 6 model 167), with
PyTorch's channels-last decoder (``img2img.nn.cpu.channels_last``, 142 ms there against ONNX
Runtime's float decoder's ~240 ms), the int8 encoder and residual blocks in ONNX Runtime
followed by the decoder in PyTorch took 675-684 ms per image against 748-760 ms for the
whole int8 graph (same PSNR); not built: the fp32 path gained the same decoder, so int8's
ratio to fp32 stays where it was (~1.65x model only), for a second model file beside the
quantized one and a split that ``.onnx`` sources could not have. On a Zen 5 (family 26
model 2) the same split gained 2 %: 459-481 against 469-489 ms per 512x512 image (the int8
head alone 301-323 ms).

Rewrites (``onnx_rewrite``) make the graph faster without changing what it computes: the
RGB output conv runs on 2x2 phases and the U-Net's transposed convs become Conv +
DepthToSpace, which quantize (both before calibration); reflection pads between equal
quantizations pad the uint8 tensor (after quantization). resnet_9blocks at 512x512, trained
stand-in, ONNX Runtime alone: 0.48 -> 0.418 s per image (2 threads), 0.732 -> 0.621 s (1
thread), Zen 5; outputs within 1e-5, PSNR against fp32 unchanged.

Normalisation layers elsewhere keep uint8 tensors around them (ONNX Runtime computes them in
float between a DequantizeLinear and a QuantizeLinear).

Calibration runs the graph only up to where its float tail starts
(:func:`calibration_graph`: the ResNet decoder's ranges are never used), in PyTorch where
the graph was exported from a PyTorch checkpoint by the TorchScript exporter
(:mod:`img2img.inference.torch_calibration`: the same ranges within float rounding; a
first run's export + calibration + quantization 6.2 -> 3.2 s for resnet_9blocks, Zen 5),
else by ONNX Runtime's calibrator. Calibration
inputs are made by the translator's own preparation (padding, value range, channel order)
from the first ``count`` images of the run or of ``--calibrate DIR``: an
image run whole gives one window; an image large enough to be tiled gives tiles spread over
it (at most ``ceil(count / images)`` each, ``count`` in all). Each window is cut to a
:data:`CALIBRATION_CROP`-pixel square at a seeded position: the ranges of 8 such crops gave
a better int8 model than 8 whole 512x512 photos (a trained resnet_9blocks on 12 photos:
worst 42.0 / mean 44.1 dB against 40.6 / 41.0 dB; whole images' rare extremes widen the
8-bit grid for every pixel) at a quarter of the calibration time (7.2 s against 20.7 s
with export and quantization, Zen 5); 128-pixel crops were faster again but clipped
(worst 38.0 dB). A georeferenced TIFF is calibrated on the values the run gives the model:
read through ``geotiff.open_model_reader`` with the run's ``--bands`` and ``--data-range``
(12-bit samples in uint16 files reach 1.0, not -0.875), and only the crops are read from
disk, so a large raster is never decoded whole; a raster the run cannot take (sample type,
bands) is skipped with the reason, as unreadable images are. The quantized model is cached
in the output folder (``OUTPUT/.img2img-cache/``), keyed by the checkpoint's SHA-256, the
calibration inputs' SHA-256, the recipe and the onnxruntime version, so a rerun of the same
command (to finish a folder, say) skips the export and the calibration.

Architectures outside :data:`FAMILIES`, and families measured below
:data:`QUALITY_BOUND_DB`, are refused with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from img2img import runtime
from img2img.checkpoint import CheckpointError, GeneratorMeta
from img2img.data.io import ImageReadError, atomic_path, read_image
from img2img.data.paths import OutsideError, check_inside, remove_stale_temps
from img2img.errors import UsageError
from img2img.inference import onnx_backend, onnx_rewrite, torch_int8
from img2img.inference.bundled import resolve_checkpoint
from img2img.inference.geotiff import GeoOptions, GeoTiffError, is_georeferenced, open_model_reader
from img2img.inference.loader import file_sha256, load_model
from img2img.inference.onnx_backend import INT8_KEY
from img2img.inference.tile_layout import TileOptions, axis_spans
from img2img.inference.torch_calibration import torch_ranges
from img2img.inference.translator import Translator, network_input, prepare_array
from img2img.nn.cpu import accelerate

log = logging.getLogger(__name__)

DEFAULT_CALIBRATE_COUNT = 8
CACHE_DIR = ".img2img-cache"  # below the output folder
RECIPE = "qdq-u8s8-perchannel-minmax-crop256-phases-u8pad-v3"  # part of the cache key
CALIBRATION_CROP = 256  # side of the square cut from each calibration window
QUALITY_BOUND_DB = 38.0


@dataclass(frozen=True)
class Family:
    """How int8 runs one family of generators, and what it gave against fp32: the worst
    PSNR of int8 against fp32 outputs (uint8) over real photos, and what that was measured
    on. A family below :data:`QUALITY_BOUND_DB` is refused with that figure."""

    name: str
    archs: tuple[str, ...]
    float_decoder: bool  # keep everything from the first upsampling layer on in float
    # run the RGB output conv on 2x2 phases (onnx_rewrite): exact where its input is always
    # even-sized (ResNet inputs are multiples of 4; SRResNet's tail follows a pixel shuffle)
    phase_output_conv: bool
    # stride-2 transposed convs as Conv + DepthToSpace (onnx_rewrite), so that they quantize
    subpixel_upsampling: bool
    worst_psnr_db: float
    measured_on: str
    speedup: float  # int8 over PyTorch fp32 speed, per image (or tile), as measured
    speed_note: str = ""  # why int8 is not faster, when it is not


# Measured with this module's recipe (onnxruntime 1.32, AMD EPYC Zen 5), calibrated on the
# first 8 of 12 nature photos at 512x512, against the fp32 PyTorch outputs of all 12 (uint8).
# No trained ResNet or U-Net checkpoint was at hand: those two were trained for the
# measurement (generator only, L1 to an OpenCV stylisation of the photos, 300 and 200 steps).
# Speed: CPU time per image, 1 thread, cached model, against PyTorch fp32 with the toolkit's
# CPU kernels (SRResNet: a whole run over 6 Set14 images, 13.3 s fp32, 19.6 s int8). These
# are ONNX Runtime's figures: the speed warning is given on that path only; the ResNet and
# SRResNet in PyTorch (torch_int8) measured 51.5 and 41.1 dB worst, 2.7x and 2.5x.
FAMILIES: tuple[Family, ...] = (
    Family("resnet", ("resnet", "resnet_6blocks", "resnet_9blocks"), True, True, False, 42.8,
           "a trained resnet_9blocks, 12 nature photos at 512x512", 2.15),
    Family("unet", ("unet", "unet_128", "unet_256"), False, False, True, 47.8,
           "a trained unet_256 with batch norm, 12 nature photos at 512x512", 2.33),
    Family("srresnet", ("srresnet",), False, True, False, 39.4,
           "models/sr_x4_naip.safetensors tiled x4 on Set14, NAIP and photo images", 0.68,
           "in ONNX Runtime the float layers at the output's resolution take most of a "
           "tile (before the output conv ran on phases: the 9x9 output conv 48%, the "
           "bicubic skip 15%, pixel shuffles 11%, PReLUs 13%; the quantized body convs "
           "6%)"),
)


def family_of(arch: str) -> Family | None:
    """The :class:`Family` an architecture name belongs to, or None."""
    return next((f for f in FAMILIES if arch in f.archs), None)


def refusal(arch: str) -> str | None:
    """Why ``--precision int8`` will not run ``arch`` (one line), or None when it does."""
    family = family_of(arch)
    if family is None:
        known = ", ".join(a for f in FAMILIES if f.worst_psnr_db >= QUALITY_BOUND_DB
                          for a in f.archs)
        return (f"--precision int8: {arch} has not been measured against fp32 in int8 "
                f"(measured: {known or 'none'}); use fp32 or bf16")
    if family.worst_psnr_db < QUALITY_BOUND_DB:
        return (f"--precision int8: refused for {arch}: int8 reached only "
                f"{family.worst_psnr_db:.1f} dB PSNR against fp32 ({family.measured_on}; "
                f"the bound is {QUALITY_BOUND_DB:.0f} dB); use fp32 or bf16")
    return None


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """The model inputs calibration runs on, where they came from, and their digest."""

    inputs: list[np.ndarray] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def digest(self) -> str:
        """SHA-256 over every input's shape and float32 bytes."""
        h = hashlib.sha256()
        for a in self.inputs:
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices of ``range(n)`` evenly spread (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def calibration_inputs(meta: GeneratorMeta, min_size: int, images: Sequence[Path],
                       count: int = DEFAULT_CALIBRATE_COUNT,
                       tiling: TileOptions | None = None, *,
                       geo: GeoOptions | None = None) -> Calibration:
    """The network inputs of the first ``count`` readable ``images``, prepared as the run
    prepares them (whole, or tiles spread over an image the run would tile), each cut to a
    :data:`CALIBRATION_CROP` square. A georeferenced TIFF is read as the run reads it, with
    ``geo``'s bands and data range, and only those crops are read from disk."""
    tiling = tiling or TileOptions()
    found = Calibration()
    per_image = max(1, math.ceil(count / max(1, min(count, len(images)))))
    for path in images:
        if len(found.images) >= count or len(found.inputs) >= count:
            break
        quota = min(per_image, count - len(found.inputs))
        number = len(found.images) + 1  # seeds the crops' positions
        try:
            inputs = _image_inputs(path, meta, min_size, tiling, geo, quota, number)
        except (ImageReadError, GeoTiffError, OSError, ValueError) as exc:
            found.skipped.append((path, str(exc)))
            continue
        found.images.append(path)
        found.inputs += inputs
    return found


def _image_inputs(path: Path, meta: GeneratorMeta, min_size: int, tiling: TileOptions,
                  geo: GeoOptions | None, quota: int, number: int) -> list[np.ndarray]:
    """The calibration inputs of one image: ``quota`` windows at most, each cropped."""
    def prepared(window: torch.Tensor) -> np.ndarray:
        x, _, _ = network_input(window[None], meta, min_size)
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    if is_georeferenced(path):
        with open_model_reader(path, geo, meta.in_channels) as reader:
            boxes = _windows(reader.height, reader.width, meta, min_size, tiling, quota)
            return [prepared(reader.read(*_crop(box, meta, min_size, (number, k))))
                    for k, box in enumerate(boxes)]
    tensor, _ = prepare_array(read_image(path), meta.in_channels)
    boxes = _windows(tensor.shape[-2], tensor.shape[-1], meta, min_size, tiling, quota)
    out = []
    for k, box in enumerate(boxes):
        y0, y1, x0, x1 = _crop(box, meta, min_size, (number, k))
        out.append(prepared(tensor[:, y0:y1, x0:x1]))
    return out


Box = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1 of an image


def _crop(box: Box, meta: GeneratorMeta, min_size: int, seed: tuple[int, int]) -> Box:
    """A :data:`CALIBRATION_CROP` square of the window ``box`` (at least ``min_size``, a
    multiple of the network's size multiple) at a position drawn from ``seed``; ``box``
    itself when it is no larger."""
    m = meta.size_multiple
    side = -(-max(CALIBRATION_CROP, min_size) // m) * m
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    if h <= side and w <= side:
        return box
    rng = np.random.default_rng(list(seed))
    i = int(rng.integers(0, max(0, h - side) + 1))
    j = int(rng.integers(0, max(0, w - side) + 1))
    return y0 + i, min(y1, y0 + i + side), x0 + j, min(x1, x0 + j + side)


def _windows(h: int, w: int, meta: GeneratorMeta, min_size: int, tiling: TileOptions,
             quota: int) -> list[Box]:
    """The whole ``h`` x ``w`` image, or ``quota`` of the tile windows the run would cut
    from it."""
    tile = tiling.tile_for(h, w, meta.scale)
    if tile is None:
        return [(0, h, 0, w)]
    geometry = dict(scale=meta.scale, multiple=meta.size_multiple, min_size=min_size)
    rows = axis_spans(h, tile, tiling.overlap, **geometry)
    cols = axis_spans(w, tile, tiling.overlap, **geometry)
    boxes = []
    for i in _spread(len(rows) * len(cols), quota):
        r, c = rows[i // len(cols)], cols[i % len(cols)]
        boxes.append((r.start, r.stop, c.start, c.stop))
    return boxes


# --------------------------------------------------------------------------- quantizing


UPSAMPLING_OPS = ("ConvTranspose", "Resize", "DepthToSpace", "Upsample")


def float_output_nodes(model: Any) -> list[str]:
    """Names of the nodes on the way from the last convolution(s) to the graph's outputs,
    those convolutions included."""
    producer = {out: node for node in model.graph.node for out in node.output}
    keep: list[str] = []
    seen: set[str] = set()
    todo = [o.name for o in model.graph.output]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type not in ("Conv", "ConvTranspose"):
            todo.extend(node.input)
    return keep


def decoder_nodes(model: Any) -> list[str]:
    """Names of the first upsampling node (in graph order) and of every node after it."""
    first = next((n for n in model.graph.node if n.op_type in UPSAMPLING_OPS), None)
    if first is None:
        return []
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep: dict[str, None] = {}
    todo = [first]
    while todo:
        node = todo.pop()
        if node.name in keep:
            continue
        keep[node.name] = None
        todo.extend(c for out in node.output for c in consumers.get(out, []))
    return list(keep)


def float_nodes(model: Any, family: Family) -> list[str]:
    """The nodes the family's recipe keeps in float: the output path, and with
    ``float_decoder`` the whole decoder."""
    keep = dict.fromkeys(float_output_nodes(model))
    if family.float_decoder:
        keep.update(dict.fromkeys(decoder_nodes(model)))
    return list(keep)


def calibration_graph(model: Any, keep: Sequence[str]) -> Any | None:
    """The part of ``model`` whose tensors' ranges quantization needs when the nodes ``keep``
    stay float: every other node, with the input-dependent tensors where that float tail
    starts (the ResNet decoder's input, say) as outputs; None when ``keep`` is not a tail
    of the graph (a quantized node reads a float one's output) or is empty, and the whole
    model is calibrated.

    The ResNet generators' float decoder is about a third of their fp32 run, all of it
    calibration time for nothing: trained resnet_9blocks, 8 crops, 2-core Xeon (family 6
    model 167): 6.6 -> 4.4 s, the quantized model's outputs identical."""
    import onnx

    kept = set(keep)
    nodes = list(model.graph.node)
    inside = {o for n in nodes if n.name in kept for o in n.output}
    if not kept or any(i in inside for n in nodes if n.name not in kept for i in n.input):
        return None
    varying = {i.name for i in model.graph.input}  # tensors that depend on the input
    for n in nodes:
        if n.name not in kept and any(i in varying for i in n.input):
            varying.update(n.output)
    starts = list(dict.fromkeys(i for n in nodes if n.name in kept for i in n.input
                                if i in varying))
    if not starts:
        return None
    head = onnx.ModelProto()
    head.CopyFrom(model)
    del head.graph.node[:]
    head.graph.node.extend(n for n in nodes if n.name not in kept)
    del head.graph.output[:]
    head.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                None) for name in starts)
    return head


class _Reader:
    """ONNX Runtime's calibration data reader over recorded inputs."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self.name, self._it = name, iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger ("consider
    pre-processing", per-bias axis notes); none of it is the user's concern."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def quantize_onnx(fp32: Path, out: Path, calibration: Calibration, family: Family,
                  metadata: dict[str, str], *, full_range: bool = True,
                  source: torch.nn.Module | None = None) -> list[str]:
    """Write the int8 (QDQ) model of the fp32 ONNX file ``fp32`` to ``out`` (atomically),
    calibrated on ``calibration``; return the nodes kept in float. ``full_range=False``:
    7-bit weights, for CPUs whose int8 kernels saturate on 8-bit ones
    (:func:`img2img.runtime.int8_weights_full_range`). ``source``: the PyTorch generator
    ``fp32`` was exported from, which measures the ranges where the graph's tensors can be
    found in it (:mod:`img2img.inference.torch_calibration`), else ONNX Runtime does."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32))
    with atomic_path(out) as tmp, _quiet_quantizer(), \
            tempfile.TemporaryDirectory(prefix="img2img-int8-") as work:
        rewritten = family.phase_output_conv and onnx_rewrite.phase_output_convs(model)
        if family.subpixel_upsampling:
            rewritten = onnx_rewrite.subpixel_transposed_convs(model) or rewritten
        keep = float_nodes(model, family)
        input_name = model.graph.input[0].name
        head = calibration_graph(model, keep)
        ranges = None if source is None else _torch_ranges(source, head, model, input_name,
                                                           calibration, Path(work))
        in_torch = ranges is not None
        # ONNX Runtime calibrates the graph that is quantized (rewritten), or its head
        calibrated = head if head is not None else model if rewritten else None
        if ranges is None and calibrated is not None:
            fp32 = Path(work) / "calibrated.onnx"
            onnx.save(calibrated, str(fp32))
        if ranges is None:
            ranges = _calibrate(fp32, _Reader(input_name, calibration.inputs), Path(work))
        quantize_static(
            model, str(tmp), None, calibration_cache_path=ranges,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=not full_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=keep, calibrate_method=CalibrationMethod.MinMax)
        quantized = onnx.load(str(tmp))
        onnx_rewrite.uint8_pads(quantized)
        del quantized.metadata_props[:]
        for k, v in metadata.items():
            entry = quantized.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(quantized, str(tmp))
    if source is not None:  # after the quantizer's logging is back on
        log.info("int8: activation ranges measured %s", "in PyTorch" if in_torch else
                 "by ONNX Runtime (the graph's tensors are not all layers of the PyTorch "
                 "model)")
    return keep


def _torch_ranges(source: torch.nn.Module, head: Any, model: Any, input_name: str,
                  calibration: Calibration, work: Path) -> Path | None:
    """The ranges of the tensors of ``head`` (the calibrated part of ``model``, or None for
    all of it) measured in PyTorch by ``source``, written as ONNX Runtime's calibration
    cache (``work/ranges.json``); None where they cannot all be."""
    from onnxruntime.quantization import CalibrationMethod, TensorsData, save_tensors_data

    ranges = torch_ranges(source, model if head is None else head, input_name,
                          calibration.inputs, whole=model)
    if ranges is None:
        return None
    path = work / "ranges.json"
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), path)
    return path


def _calibrate(fp32: Path, reader: _Reader, work: Path) -> Path:
    """The min/max range of every tensor of ``fp32`` over the reader's inputs, written as
    ONNX Runtime's calibration cache (``work/ranges.json``, read by ``quantize_static``).

    ONNX Runtime's calibrator runs its model (every tensor made an output) with graph
    optimisations off; here the same model runs with them on (fused, blocked-layout convs),
    which leaves every tensor in place and took calibration from 3.4 to 2.0 s per 512x512
    input (resnet_9blocks, 2 threads, Zen 5; ranges equal within 5e-5)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(fp32, None, augmented_model_path=str(work / "aug.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    # the session collect_data runs: the toolkit's own (torch's thread count, errors only)
    calibrator.infer_session = onnx_backend.open_session(calibrator.augmented_model_path)
    calibrator.collect_data(reader)
    ranges = work / "ranges.json"
    save_tensors_data(calibrator.compute_data(), ranges)
    return ranges


# --------------------------------------------------------------------------- the translator


# Measured on 2-core Xeons with AMX, 16 photos at 512x512, resnet_9blocks (folder, img/s).
_AMX_BF16_NOTE = ("bf16, which --precision auto picks on this CPU, measured as fast as or "
                  "faster than int8 on CPUs with AMX, and closer to fp32 (resnet_9blocks, "
                  "2-core Xeon family 6 model 167: bf16 1.39-1.51 img/s, int8 1.13-1.39 with "
                  "its model cached; family 6 model 207: bf16 0.70-0.87, int8 0.86)")


def amx_note(flags: frozenset[str] | None = None) -> str | None:
    """Why int8 is not the fast choice on a CPU with AMX's bf16 tiles (``amx_bf16`` in
    ``flags``, default this CPU's), or None on other CPUs."""
    flags = runtime.cpu_flags() if flags is None else flags
    return _AMX_BF16_NOTE if "amx_bf16" in flags else None


def check_request(device: torch.device, dropout_at_test: bool = False, compile: bool = False,
                  per_image_norm: bool = False) -> None:
    """UsageError for what ``--precision int8`` cannot do: a non-CPU device, options that
    change a PyTorch network; and when ONNX Runtime is missing (naming the extra)."""
    if device.type != "cpu":
        raise UsageError(f"--precision int8 runs on the CPU (ONNX Runtime's int8 kernels); "
                         f"--device {device} would need fp16 or bf16 instead")
    given = [flag for flag, on in (("--dropout-at-test", dropout_at_test),
                                   ("--compile", compile),
                                   ("--per-image-norm", per_image_norm)) if on]
    if given:
        raise UsageError(f"{given[0]}: does not apply to --precision int8 (the quantized "
                         f"graph is fixed)")


def _require_onnx(exporting: bool) -> None:
    """UsageError naming the extra when ONNX Runtime's int8 path cannot run here."""
    for module in ("onnx", "onnxruntime"):
        onnx_backend.require(module, "--precision int8")
    if exporting:
        onnx_backend.require_installed("onnxscript", "--precision int8 (exporting to ONNX)")


def _source(checkpoint: Path, key: str | None
            ) -> tuple[GeneratorMeta, int, str, torch.nn.Module | None]:
    """The checkpoint's metadata, smallest input side, SHA-256 and PyTorch network (None
    for an ``.onnx``; UsageError for one that cannot be quantized again)."""
    if onnx_backend.is_onnx(checkpoint):
        _require_onnx(exporting=False)
        gen, meta = onnx_backend.load_onnx(checkpoint, "cpu")
        if gen.precision != "fp32":
            raise UsageError(f"{checkpoint}: an fp16 or int8 .onnx cannot be quantized; "
                             f"give the fp32 .onnx or the .safetensors")
        return meta, gen.min_size, file_sha256(checkpoint), None
    model, meta = load_model(checkpoint, "cpu", key)
    return meta, int(getattr(model, "min_size", 1)), file_sha256(checkpoint), model


def int8_translator(checkpoint: str | os.PathLike, output: str | os.PathLike,
                    calibrate_from: Sequence[Path], count: int = DEFAULT_CALIBRATE_COUNT,
                    tiling: TileOptions | None = None, key: str | None = None,
                    label: str = "", *, geo: GeoOptions | None = None) -> Translator:
    """A translator running ``checkpoint`` in int8 (calibrated on the first ``count``
    readable images of ``calibrate_from``), the quantized model cached below ``output``.

    ``geo``: the run's GeoTIFF options (bands, data range), which georeferenced calibration
    images are read with. ``label`` names the calibration source in the log. Raises
    UsageError for a refused family, bands the model cannot take or unusable calibration
    images, CheckpointError for an unreadable checkpoint.
    """
    src, out = resolve_checkpoint(checkpoint), Path(output)
    if not src.is_file():
        raise CheckpointError(f"{src}: checkpoint file not found")
    meta, min_size, sha, model = _source(src, key)
    reason = refusal(meta.arch)
    family = family_of(meta.arch)
    if reason or family is None:
        raise UsageError(reason or meta.arch)
    in_torch = model is not None and torch_int8.fits(model)
    if not in_torch:
        _require_onnx(exporting=model is not None)
        if family.speedup < 1:
            log.warning("--precision int8: %s measured %.2fx the speed of fp32 in int8 (%s); "
                        "fp32 or bf16 is faster here", meta.arch, family.speedup,
                        family.speed_note)
        note = amx_note()
        if note:
            log.warning("--precision int8: %s", note)
    if geo is not None:  # before calibration skips every raster for it
        geo.check_model(meta.in_channels)
    start = time.perf_counter()
    calib = calibration_inputs(meta, min_size, calibrate_from, count, tiling, geo=geo)
    for path, why in calib.skipped:
        log.warning("int8 calibration: skipped %s (%s)", path, why)
    if not calib.inputs:
        raise UsageError(f"--precision int8: no readable calibration image among "
                         f"{len(calibrate_from)} in {label or 'the run'}")
    full_range = runtime.int8_weights_full_range()
    if not full_range:
        log.info("int8: this CPU has none of %s (its int8 kernels add products in saturating "
                 "16-bit lanes): weights quantized to 7 bits", "/".join(runtime.INT8_DOT_FLAGS))
    bits = "" if full_range else "; 7-bit weights"
    recipe = (torch_int8.RECIPE if in_torch else
              f"{RECIPE}; float decoder {family.float_decoder}") + bits
    version = f"torch {torch.__version__}" if in_torch else _ort_version()
    digest = hashlib.sha256(f"{sha}|{key}|{calib.digest()}|{recipe}|"
                            f"{version}".encode()).hexdigest()
    cache = out / CACHE_DIR
    suffix = ".json" if in_torch else ".onnx"
    target = cache / f"{src.stem}.int8-{digest[:16]}{suffix}"
    try:  # before anything is written or cleaned there
        check_inside(target, out)
    except OutsideError as exc:
        raise UsageError(f"--precision int8 caches its model in {cache}: {exc}") from None
    described = (f"{len(calib.inputs)} input(s) from {len(calib.images)} image(s) of "
                 f"{label or 'the run'}")
    if in_torch:
        assert model is not None
        return _torch_translator(model, meta, calib, target, f"{recipe}; calibrated on "
                                 f"{described}", full_range, start)
    del model  # ONNX Runtime's path loads what it needs itself
    if target.is_file():
        log.info("int8: reusing %s (calibrated earlier on %s)", target, described)
    else:
        if cache.is_dir():  # a killed earlier run's temp files
            remove_stale_temps(cache)
        export_s = _quantize_checkpoint(src, key, target, calib, meta, min_size, family,
                                        f"{recipe}; calibrated on {described}", full_range)
        exported = "" if onnx_backend.is_onnx(src) else f"exported in {export_s:.1f} s, "
        log.info("int8: %scalibrated on %s and quantized in %.1f s; cached as %s", exported,
                 described, time.perf_counter() - start - export_s, target)
    gen, _ = onnx_backend.load_onnx(target, "cpu")
    gen.architecture = f"{meta.arch} (ONNX Runtime int8)"
    return Translator(gen, meta, torch.device("cpu"))  # type: ignore[arg-type]


def _torch_translator(model: torch.nn.Module, meta: GeneratorMeta, calib: Calibration,
                      target: Path, note: str, full_range: bool, start: float) -> Translator:
    """``model`` quantized in PyTorch (``torch_int8``), its ranges cached as ``target``."""
    if target.parent.is_dir():  # a killed earlier run's temp files
        remove_stale_temps(target.parent)
    net, reused = torch_int8.int8_network(model, calib.inputs, target, note,
                                         weight_max=127 if full_range else 63)
    if reused:
        log.info("int8: reusing the activation ranges in %s (calibrated earlier: %s)", target,
                 note)
    else:
        log.info("int8: activation ranges measured in PyTorch and the convolutions "
                 "quantized for oneDNN in %.1f s (%s); ranges cached as %s",
                 time.perf_counter() - start, note, target)
    net.architecture = f"{meta.arch} (PyTorch int8, oneDNN)"
    return Translator(net, meta, torch.device("cpu"))


def _quantize_checkpoint(src: Path, key: str | None, target: Path, calib: Calibration,
                         meta: GeneratorMeta, min_size: int, family: Family,
                         note: str, full_range: bool) -> float:
    """Export ``src`` to fp32 ONNX beside ``target`` (unless it is one) and quantize it
    (``full_range``: 8-bit weights, else 7); ``note`` goes into the file's metadata
    (:data:`INT8_KEY`). Returns the export's seconds."""
    metadata = {**meta.to_metadata(), onnx_backend.MIN_SIZE_KEY: str(min_size),
                onnx_backend.FP16_KEY: "0", INT8_KEY: note}
    if onnx_backend.is_onnx(src):
        quantize_onnx(src, target, calib, family, metadata, full_range=full_range)
        return 0.0
    from img2img.inference.onnx_export import export_onnx

    fp32 = target.with_name(target.stem + ".fp32.onnx")
    try:
        start = time.perf_counter()
        export_onnx(src, fp32, key=key, quick=True)
        export_s = time.perf_counter() - start
        source, _ = load_model(src, "cpu", key)  # measures the ranges, with its CPU kernels
        quantize_onnx(fp32, target, calib, family, metadata, full_range=full_range,
                      source=accelerate(source.eval()))
    finally:
        fp32.unlink(missing_ok=True)
    return export_s


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
