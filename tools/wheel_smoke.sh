#!/usr/bin/env bash
# The package as a pip user gets it: build the wheel from a clean copy of the checkout, check
# what it holds, install it into a fresh virtual environment outside the checkout (base
# install, no extras), and run the commands a new user would, from another folder.
#
#   bash tools/wheel_smoke.sh          # PYTHON=python3.12 picks the interpreter (as make does)
#
# Any failure stops the script with the step named (exit 1). WHEEL_SMOKE_KEEP=1 keeps the
# temp folder; WHEEL_SMOKE_SKIP="help,data" skips steps by name (for development only:
# skipped steps are printed; with `data` skipped the dataset is written by Python instead).
set -Eeuo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
unset PYTHONPATH PYTHONHOME  # nothing may come from the checkout
WORK=$(mktemp -d "${TMPDIR:-/tmp}/img2img-wheel-smoke.XXXXXX")
case "$WORK/" in "$REPO"/*) echo "wheel smoke: temp folder $WORK is inside $REPO" >&2; exit 1 ;; esac

STEP="set-up"
PASSED=0
failed() { echo "wheel smoke: FAILED at step '$STEP' (folder: $WORK)" >&2; }
finish() {
    if [ -n "${WHEEL_SMOKE_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap failed ERR
trap finish EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "  $*" >&2; return 1; }

# step NAME FUNCTION: run one step, named on failure (the ERR trap) and timed on success.
step() {
    STEP=$1
    if [[ ",${WHEEL_SMOKE_SKIP:-}," == *",$1,"* ]]; then
        echo "== $1: SKIPPED (WHEEL_SMOKE_SKIP)"
        return 0
    fi
    echo "== $1"
    local t0
    t0=$(now)
    "$2"
    PASSED=$((PASSED + 1))
    echo "   ok ($(since "$t0") s)"
}

SRC=$WORK/src DIST=$WORK/dist VENV=$WORK/venv RUN=$WORK/run
CHECKOUT_STATE=""

copy_source() {  # the files a fresh clone has (tracked, plus new files not ignored)
    mkdir -p "$SRC"
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        CHECKOUT_STATE=$(git -C "$REPO" status --porcelain --untracked-files=all)
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
            | tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$SRC"
    else
        (cd "$REPO" && tar --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
            -cf - .) | tar -xf - -C "$SRC"
    fi
}

build_wheel() {
    "$PYTHON" -m pip wheel --quiet --no-deps "$SRC" -w "$DIST"
    WHEEL=$(ls "$DIST"/img2img-*.whl)
}

check_contents() {  # the package and its data, complete; nothing else
    "$PYTHON" - "$WHEEL" "$SRC" <<'EOF'
import hashlib, sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    model = z.read("img2img/models/sr_x4_naip.safetensors") \
        if "img2img/models/sr_x4_naip.safetensors" in names else b""
    entry = next((z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")),
                 "")
problems = []
others = sorted(n for n in names if not n.startswith("img2img/")
                and not (n.startswith("img2img-") and ".dist-info/" in n))
if others:
    problems.append(f"not the package: {others[:10]} ({len(others)} files)")
for top in ("tests/", "tools/", "datasets/", "samples/", "models/", "img2img/bench/__pycache__/"):
    if any(n.startswith(top) for n in names):
        problems.append(f"{top} is in the wheel")
wanted = {p.relative_to(src).as_posix() for p in (src / "img2img").rglob("*")
          if p.is_file() and "__pycache__" not in p.parts}
missing = sorted(wanted - names)
if missing:
    problems.append(f"missing from the wheel: {missing}")
real = (src / "img2img/models/sr_x4_naip.safetensors").read_bytes()
if hashlib.sha256(model).digest() != hashlib.sha256(real).digest():
    problems.append(f"img2img/models/sr_x4_naip.safetensors: {len(model)} bytes in the wheel, "
                    f"{len(real)} in the checkout")
if "img2img = img2img.cli:main" not in entry:
    problems.append("no img2img console script in entry_points.txt")
if problems:
    sys.exit("  " + "\n  ".join(problems))
print(f"   {len(names)} files, every file of img2img/ ({len(wanted)}) included, nothing else")
EOF
}

create_venv() {
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
}

install_wheel() {  # the Makefile's pip flags; the base install, no extras
    "$VENV/bin/python" -m pip install --quiet -c "$REPO/constraints.txt" "$WHEEL"
    export PATH="$VENV/bin:$PATH"
    mkdir -p "$RUN"
    cd "$RUN"
    [ "$(command -v img2img)" = "$VENV/bin/img2img" ] || fail "img2img is $(command -v img2img)"
    PY=$VENV/bin/python
    "$PY" - "$REPO" <<'EOF'
import sys
from pathlib import Path

import img2img

where = Path(img2img.__file__).resolve()
if Path(sys.argv[1]).resolve() in where.parents:
    sys.exit(f"  img2img imported from the checkout: {where}")
print(f"   img2img {img2img.__version__} from {where.parent}")
EOF
}

run_help() {
    img2img --help >help.txt
    for cmd in train translate data evaluate benchmark models; do
        grep -qw "$cmd" help.txt || fail "img2img --help (stdout) does not list '$cmd'"
    done
}

make_images() {  # loose photos for A and B, a 16x16 image, a reference/prediction pair
    "$PY" - <<'EOF'
from pathlib import Path

import numpy as np
from PIL import Image

rng = np.random.default_rng(0)


def photo(h: int, w: int, tint: tuple[float, float, float]) -> Image.Image:
    base = rng.random((h // 8 + 2, w // 8 + 2, 3))
    img = Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(img, np.float32) * np.asarray(tint, np.float32)
    return Image.fromarray(np.clip(arr + rng.normal(0, 4, arr.shape), 0, 255).astype(np.uint8))


for domain, tint, ext in (("A", (1.0, 0.8, 0.6), "png"), ("B", (0.6, 0.8, 1.0), "jpg")):
    folder = Path("loose") / domain
    folder.mkdir(parents=True)
    for i in range(6):
        photo(40, 48, tint).save(folder / f"{domain.lower()}{i}.{ext}")
Path("small").mkdir()
photo(16, 16, (1, 1, 1)).save("small/tiny.png")
for name in ("x", "y"):
    ref = photo(24, 24, (1, 1, 1))
    noisy = np.asarray(ref, np.float32) + rng.normal(0, 6, (24, 24, 3))
    for folder, im in (("ref", ref), ("pred", Image.fromarray(
            np.clip(noisy, 0, 255).astype(np.uint8)))):
        Path("eval", folder).mkdir(parents=True, exist_ok=True)
        im.save(Path("eval", folder, f"{name}.png"))
EOF
}

count() { find "$1" -type f | wc -l; }

run_data() {
    img2img data make-unpaired --a loose/A --b loose/B --out ds --test-fraction 0.34 --seed 0
    for d in trainA trainB testA testB; do
        [ "$(count "ds/$d")" -ge 1 ] || fail "ds/$d is empty"
    done
    [ $(($(count ds/trainA) + $(count ds/testA))) -eq 6 ] || fail "ds: not the 6 A images"
}

layout_without_data_step() {  # only when `data` is skipped (development)
    [ -d ds ] && return 0
    "$PY" - <<'EOF'
import shutil
from pathlib import Path

for domain in "AB":
    files = sorted(Path("loose", domain).iterdir())
    for split, part in (("train", files[:4]), ("test", files[4:])):
        (Path("ds") / f"{split}{domain}").mkdir(parents=True)
        for f in part:
            shutil.copy(f, Path("ds") / f"{split}{domain}" / f.name)
EOF
}

run_train() {
    img2img train --task cyclegan --data ds --out train_run --steps 2 --batch-size 1 \
        --generator resnet_6blocks --ngf 8 --ndf 8 --load-size 36 --crop-size 32 --workers 0 \
        --device cpu --quiet
    [ -s train_run/G_A2B.safetensors ] || fail "train_run/G_A2B.safetensors was not written"
}

run_translate_trained() {
    img2img translate --checkpoint train_run/G_A2B.safetensors --input ds/testA \
        --output out_a2b --device cpu --quiet
    [ "$(count out_a2b)" -eq "$(count ds/testA)" ] || fail "out_a2b: not one output per input"
}

run_translate_bundled() {  # by name, then by the installed file's path: same pixels
    img2img translate --checkpoint sr_x4_naip --input small --output up --device cpu --quiet
    local path
    path=$("$PY" -c "from img2img.inference.bundled import bundled_path as b
print(b('sr_x4_naip'))")
    case "$path" in "$VENV"/*) ;; *) fail "bundled model at $path, not in the venv" ;; esac
    img2img translate --checkpoint "$path" --input small --output up_path --device cpu --quiet
    "$PY" - <<'EOF'
import sys

import numpy as np
from PIL import Image

a, b = (np.asarray(Image.open(f"{d}/tiny.png")) for d in ("up", "up_path"))
if a.shape != (64, 64, 3):
    sys.exit(f"  up/tiny.png is {a.shape}, expected 64x64x3 (x4 of 16x16)")
if not np.array_equal(a, b):
    sys.exit("  the bundled model by name and by path gave different pixels")
EOF
}

run_unknown_name() {  # one line, exit 2
    local code=0
    img2img translate --checkpoint no_such_model --input small --output nope 2>err.txt \
        || code=$?
    [ "$code" -eq 2 ] || fail "exit $code for an unknown model name, expected 2"
    [ "$(wc -l <err.txt)" -eq 1 ] && grep -q "sr_x4_naip" err.txt \
        || fail "not one line naming the bundled models: $(cat err.txt)"
}

run_evaluate() {
    img2img evaluate --pred eval/pred --ref eval/ref --json eval.json | tee eval.txt
    grep -q PSNR eval.txt || fail "no PSNR column"
    "$PY" -c "import json, sys
m = json.load(open('eval.json'))['mean']
sys.exit(0 if m['count'] == 2 and 25 < m['psnr'] < 60 and 0.5 < m['ssim'] <= 1
         else f'  eval.json mean: {m}')"
}

run_bench_library() {  # the measurement code from the wheel: generated inputs, no repo paths
    "$PY" - <<'EOF'
from pathlib import Path

import torch

from img2img.bench.common import format_table
from img2img.bench.sr import sr_tiled
from img2img.bench.translate import translation

cpu, work = torch.device("cpu"), Path("bench_work")
rows, sr = sr_tiled(cpu, ["fp32"], True, work / "sr", size=24, tile=16)
assert sr["by_precision"]["fp32"]["output"] == "96x96.png", sr
more, tr = translation(cpu, ["fp32"], True, work / "tr", batch_size=1, count=2)
assert tr["by_precision"]["fp32"]["folder_images_per_s"] > 0, tr
print(format_table(rows + more))
EOF
}

run_benchmark() {  # the subcommand, same flags as tools/benchmark.py
    img2img benchmark --quick --only translate,sr --precision fp32 --num-images 2 \
        --sr-size 24 --tile 16 --repeats 1 --warmup 0 --json bench.json
    "$PY" -c "import json, sys
r = json.load(open('bench.json'))
bad = [s for s in ('translate', 'sr') if 'error' in r.get(s, {'error': 'absent'})]
sys.exit(f'  benchmark sections failed: {bad}' if bad else 0)"
}

checkout_unchanged() {  # nothing written into the checkout (a git one; else not checked)
    git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 0
    [ "$(git -C "$REPO" status --porcelain --untracked-files=all)" = "$CHECKOUT_STATE" ] \
        || fail "the checkout changed: $(git -C "$REPO" status --porcelain | head -5)"
}

T0=$(now)
step copy-source copy_source
TB=$(now)
step build-wheel build_wheel
BUILD_S=$(since "$TB")
step wheel-contents check_contents
TV=$(now)
step venv create_venv
TI=$(now)
step install install_wheel
INSTALL_S=$(since "$TI")
VENV_S=$(awk -v a="$TV" -v b="$TI" 'BEGIN { printf "%.1f", b - a }')
TS=$(now)
step help run_help
step images make_images
step data run_data
layout_without_data_step
step train run_train
step translate-trained run_translate_trained
step translate-bundled run_translate_bundled
step unknown-model run_unknown_name
step evaluate run_evaluate
step bench-library run_bench_library
step benchmark run_benchmark
step checkout-unchanged checkout_unchanged
SMOKE_S=$(since "$TS")
SIZE=$(stat -c %s "$WHEEL")
echo "wheel smoke OK: $PASSED steps; $(basename "$WHEEL") $((SIZE / 1024)) KiB (built in" \
     "${BUILD_S} s); venv + pip ${VENV_S} s, install ${INSTALL_S} s; commands ${SMOKE_S} s;" \
     "total $(since "$T0") s"
