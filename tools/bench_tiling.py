#!/usr/bin/env python
"""Time and peak memory of tiled upscaling through ``img2img translate``.

    python tools/bench_tiling.py --size 1000x1000 [--size 4000x512 ...] [--tile 256]
                                 [--overlap 32] [--batch-size 1] [--ext png|tif]
                                 [--threads N] [--channels 64] [--n-blocks 16]
                                 [--json FILE]

Builds a full-size SRResNet x4 with random weights (``build_generator("srresnet",
scale=4)``) and a noisy PNG per size, then runs each translation in a fresh child process
(which reports its own peak RSS and CPU time from ``getrusage(RUSAGE_SELF)``). Prints a
table (wall and CPU seconds per input megapixel, peak RSS) and optionally writes it as
JSON. Work happens in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout too

# The child reports its own peak RSS and CPU time (getrusage RUSAGE_SELF) in a JSON file.
_CHILD = """
import json, resource, sys, torch
torch.set_num_threads({threads})
from img2img.cli import translate_main
code = translate_main({argv!r})
r = resource.getrusage(resource.RUSAGE_SELF)
with open({report!r}, "w") as f:
    json.dump({{"maxrss_kb": r.ru_maxrss, "cpu_s": r.ru_utime + r.ru_stime}}, f)
sys.exit(code)
"""


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=_size, action="append", metavar="WxH",
                    help="input size (repeatable; default 1000x1000)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--ext", default="png", choices=["png", "tif"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--channels", type=int, default=64,
                    help="SRResNet width (64 as published; small values isolate the memory "
                         "of reading, blending and writing from the network's)")
    ap.add_argument("--n-blocks", type=int, default=16, help="SRResNet residual blocks")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch

    from img2img.checkpoint import meta_for, save_generator
    from img2img.nn import build_generator

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        kwargs = {"scale": 4, "channels": args.channels, "n_blocks": args.n_blocks}
        net = build_generator("srresnet", **kwargs).eval()
        ckpt = root / "srresnet_x4.safetensors"
        save_generator(ckpt, net, meta_for(net, "srresnet", kwargs, "srgan"))
        for w, h in args.size or [(1000, 1000)]:
            src = root / f"in_{w}x{h}"
            src.mkdir()
            img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            cv2.imwrite(str(src / "img.png"), cv2.GaussianBlur(img, (0, 0), 2))
            argv = ["--checkpoint", str(ckpt), "--input", str(src), "--output",
                    str(root / f"out_{w}x{h}"), "--tile", str(args.tile), "--tile-overlap",
                    str(args.overlap), "--batch-size", str(args.batch_size), "--device", "cpu",
                    "--ext", args.ext, "--quiet"]
            report = root / "child.json"
            start = time.perf_counter()
            code = subprocess.call([sys.executable, "-c", _CHILD.format(
                threads=args.threads, argv=argv, report=str(report))])
            seconds = time.perf_counter() - start
            usage = json.loads(report.read_text()) if report.exists() else {}
            mp = w * h / 1e6
            row = {"size": f"{w}x{h}", "channels": args.channels, "n_blocks": args.n_blocks,
                   "tile": args.tile, "overlap": args.overlap,
                   "batch_size": args.batch_size, "ext": args.ext, "threads": args.threads,
                   "exit_code": code, "seconds": round(seconds, 1),
                   "s_per_input_mp": round(seconds / mp, 1),
                   "cpu_s_per_input_mp": round(usage.get("cpu_s", float("nan")) / mp, 1),
                   "peak_rss_mb": round(usage.get("maxrss_kb", 0) / 1024)}
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            for f in (root / f"out_{w}x{h}").glob("*"):
                f.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
