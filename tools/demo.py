#!/usr/bin/env python
"""Demo: learn aerial RGB -> colour-infrared (CIR) with CycleGAN on the bundled NAIP samples.

1. Cuts the bundled NAIP photos of 2009-2018 (``samples/naip``, USDA public domain) into
   tiles on a checkerboard: ``trainA`` = the natural-colour RGB of the "white" tiles,
   ``trainB`` = the colour-infrared (near-infrared, red, green) of the "black" tiles, so no
   place is seen in both domains (unpaired).
2. Trains a small CycleGAN on the CPU for a few minutes.
3. Translates the held-out RGB photo of 2020 at full size with ``G_A2B``.
4. Upscales the 2020 photo x4 with the bundled super-resolution model
   (``--checkpoint sr_x4_naip``: ``img2img/models/sr_x4_naip.safetensors``) and, for
   comparison, with bicubic interpolation.
5. Writes ``index.html``: each input beside its translation and the real CIR picture, and
   the bicubic and model upscalings.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from img2img.cli import train_main, translate_main  # noqa: E402
from img2img.data.io import read_image, write_image  # noqa: E402

SAMPLES = ROOT / "samples" / "naip"
SR_MODEL = "sr_x4_naip"  # the bundled model, by name
MARKER = ".img2img-demo"  # only folders holding this file are ever deleted by the demo
TRAIN_YEARS = ("2009", "2012", "2015", "2018")
TEST_YEARS = ("2020",)


def cut_tiles(src: Path, dst: Path, size: int, parity: int) -> int:
    """Write the ``size`` x ``size`` tiles of ``src`` whose checkerboard colour is ``parity``."""
    img = read_image(src)
    h, w = img.shape[:2]
    n = 0
    for i, y in enumerate(range(0, h - size + 1, size)):
        for j, x in enumerate(range(0, w - size + 1, size)):
            if (i + j) % 2 == parity:
                write_image(dst / f"{src.stem}_{y}_{x}.png", img[y : y + size, x : x + size])
                n += 1
    return n


def build_dataset(root: Path, tile: int) -> None:
    """Build ``root/trainA``, ``root/trainB`` and ``root/testA`` from the bundled samples."""
    for year in TRAIN_YEARS:
        cut_tiles(SAMPLES / f"naip_{year}_rgb.jpg", root / "trainA", tile, parity=0)
        cut_tiles(SAMPLES / f"naip_{year}_cir.jpg", root / "trainB", tile, parity=1)
    (root / "testA").mkdir(parents=True, exist_ok=True)
    for year in TEST_YEARS:
        shutil.copy(SAMPLES / f"naip_{year}_rgb.jpg", root / "testA")


def upscale(out: Path, src: Path, device: str) -> list[Path]:
    """x4 with the bundled model (tiled) and with bicubic; returns [bicubic, model] paths."""
    from img2img.data.resize import bicubic_resize

    img = read_image(src)
    bicubic = out / "sr" / f"{src.stem}_bicubic_x4.png"
    write_image(bicubic, bicubic_resize(img, img.shape[1] * 4, img.shape[0] * 4))
    rc = translate_main(["--checkpoint", SR_MODEL, "--input", str(src), "--output",
                         str(out / "sr" / "model"), "--ext", "png", "--tile", "128",
                         "--device", device, "--quiet"])
    if rc:
        raise RuntimeError(f"upscaling {src} failed (exit code {rc})")
    return [bicubic, out / "sr" / "model" / f"{src.stem}.png"]


def write_page(out: Path, inputs: Path, outputs: Path, upscaled: list[Path]) -> Path:
    """An HTML page with input | translation | real CIR, then bicubic | model x4."""
    rows = []
    for src in sorted(inputs.iterdir()):
        real = SAMPLES / src.name.replace("_rgb", "_cir")
        ref = out / "page" / real.name
        ref.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real, ref)
        cells = [src.relative_to(out), (outputs / src.name).relative_to(out),
                 ref.relative_to(out)]
        rows.append("<tr>" + "".join(
            f'<td><img src="{html.escape(str(c))}" width="420"></td>' for c in cells) + "</tr>")
    page = out / "index.html"
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>img2img demo: RGB to colour-infrared</title>"
        "<h1>CycleGAN: aerial RGB &rarr; colour-infrared</h1>"
        "<p>Trained for a few minutes on the CPU, unpaired (RGB and infrared tiles of "
        "different places), on NAIP photos of 2009-2018 (USDA, public domain); the 2020 photo "
        "was not used in training. Vegetation turns red, as near-infrared shows it.</p>"
        "<table><tr><th>input (RGB)</th><th>translated by G_A2B</th>"
        "<th>real colour-infrared (not seen in training)</th></tr>" + "".join(rows) +
        "</table>"
        "<h1>Super-resolution &times;4 of the same photo</h1>"
        "<p>Left: bicubic. Right: the bundled SRResNet model (sr_x4_naip), "
        "tiled. Open each image on its own to compare details.</p><table><tr>" + "".join(
            f'<td><img src="{html.escape(str(p.relative_to(out)))}" width="640"></td>'
            for p in upscaled) + "</tr></table>"
    )
    return page


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_out")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--tile", type=int, default=80)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    out = Path(args.out).resolve()
    if (out / MARKER).exists():
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty and is not an earlier demo folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    data = out / "data"
    build_dataset(data, args.tile)
    print(f"dataset: {data} ({len(list((data / 'trainA').iterdir()))} RGB tiles, "
          f"{len(list((data / 'trainB').iterdir()))} CIR tiles)")
    t0 = time.time()
    rc = train_main([
        "--task", "cyclegan", "--data", str(data), "--out", str(out / "run"),
        "--steps", str(args.steps), "--generator", "resnet_6blocks", "--ngf", "16",
        "--ndf", "32", "--upsample", "resize", "--preprocess", "crop", "--crop-size", "64",
        "--batch-size", "1",
        "--workers", "1", "--sample-every", "250", "--save-every", "500",
        "--device", args.device, "--seed", "0",
    ])
    if rc:
        return rc
    print(f"trained in {time.time() - t0:.0f} s")
    rc = translate_main(["--checkpoint", str(out / "run" / "G_A2B.safetensors"),
                         "--input", str(data / "testA"), "--output", str(out / "translated"),
                         "--device", args.device, "--quiet"])
    if rc:
        return rc
    upscaled = upscale(out, data / "testA" / f"naip_{TEST_YEARS[0]}_rgb.jpg", args.device)
    page = write_page(out, data / "testA", out / "translated", upscaled)
    print(f"demo page: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
