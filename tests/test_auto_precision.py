"""``--precision auto``: the precision each device does well, from the CPU's flags (faked
here for Zen 3, Zen 4, Ice Lake and Sapphire Rapids) or the GPU's compute capability."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img import runtime
from img2img.checkpoint import meta_for
from img2img.cli import train_main, translate_parser
from img2img.data.io import write_image
from img2img.inference.translator import Translator
from img2img.nn import build_generator

ZEN3 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
ICE_LAKE = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni", "avx512ifma"}
SAPPHIRE_RAPIDS = ICE_LAKE | {"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
ARM_BF16 = frozenset({"fp", "asimd", "sve", "bf16", "i8mm"})  # e.g. Graviton 3


@pytest.mark.parametrize(("flags", "expected"), [
    (ZEN3, "fp32"), (ZEN4, "bf16"), (ICE_LAKE, "fp32"), (SAPPHIRE_RAPIDS, "bf16"),
    (frozenset({"amx_bf16"}), "bf16"), (ARM_BF16, "fp32"), (frozenset(), "fp32")])
@pytest.mark.parametrize("training", [True, False])
def test_cpu_gets_bf16_only_with_native_bf16_dot_products(
        flags: frozenset[str], expected: str, training: bool) -> None:
    assert runtime.choose_precision("cpu", flags, None, training)[0] == expected


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (ZEN3, "x86_64", False), (ZEN3 | {"avx512f", "avx512bw"}, "x86_64", False),  # Skylake-SP
    (ICE_LAKE, "x86_64", True), (ZEN4, "AMD64", True), (SAPPHIRE_RAPIDS, "x86_64", True),
    (ZEN3 | {"avx_vnni"}, "x86_64", True),  # Alder Lake
    (frozenset(), "x86_64", False), (ARM_BF16, "aarch64", True), (frozenset(), "arm64", True)])
def test_int8_weights_get_7_bits_on_x86_without_vnni(flags: frozenset[str], machine: str,
                                                     expected: bool) -> None:
    assert runtime.int8_weights_full_range(flags, machine) is expected


@pytest.mark.parametrize(("capability", "expected"), [
    ((9, 0), "bf16"), ((8, 6), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((7, 0), "fp16"),
    ((6, 1), "fp32")])
@pytest.mark.parametrize("training", [True, False])
def test_cuda_by_compute_capability(capability: tuple[int, int], expected: str,
                                    training: bool) -> None:
    assert runtime.choose_precision("cuda", ZEN4, capability, training)[0] == expected


def test_mps_stays_fp32_even_where_the_cpu_has_bf16() -> None:
    for training in (True, False):
        assert runtime.choose_precision("mps", frozenset({"bf16"}), None, training)[0] == "fp32"


CPUINFO_ICE_LAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme de pse avx2 avx512f avx512dq avx512_vnni avx512_bitalg
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu
"""
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve bf16 i8mm
CPU implementer\t: 0x41
"""
SYSCTL_INTEL_MAC = """machdep.cpu.brand_string: Intel(R) Core(TM) i7-1068NG7 CPU @ 2.30GHz
machdep.cpu.features: FPU VME DE PSE TSC SSE4.2 AVX1.0 RDRAND F16C
machdep.cpu.leaf7_features: RDWRFSGS BMI1 AVX2 SMEP BMI2 AVX512F AVX512DQ AVX512VNNI
hw.optional.avx2_0: 1
hw.optional.avx512f: 1
hw.optional.avx512vnni: 1
"""
SYSCTL_APPLE = """hw.optional.arm.FEAT_BF16: {bf16}
hw.optional.arm.FEAT_DotProd: 1
hw.optional.floatingpoint: 1
hw.optional.neon_fp16: 1
machdep.cpu.brand_string: Apple M2
"""


def test_cpuinfo_flags_of_the_first_processor() -> None:
    flags = runtime.parse_cpuinfo(CPUINFO_ICE_LAKE)
    assert {"avx2", "avx512f", "avx512_vnni"} <= flags and "avx512_bf16" not in flags
    assert runtime.choose_precision("cpu", flags, None, True)[0] == "fp32"
    assert {"sve", "bf16"} <= runtime.parse_cpuinfo(CPUINFO_ARM)
    assert runtime.parse_cpuinfo("processor\t: 0\n") == frozenset()


def test_cpu_vendor_read_from_cpuinfo_or_sysctl() -> None:
    """The vendor picks the Winograd products' library (oneDNN on AMD, MKL on Intel)."""
    assert runtime.parse_cpu_vendor(CPUINFO_ICE_LAKE) == "GenuineIntel"
    assert runtime.parse_cpu_vendor("machdep.cpu.vendor: GenuineIntel\n") == "GenuineIntel"
    assert runtime.parse_cpu_vendor(CPUINFO_ARM) == ""


def test_sysctl_flags_intel_mac_and_apple_silicon() -> None:
    intel = runtime.parse_sysctl(SYSCTL_INTEL_MAC)
    assert {"avx", "avx2", "avx512f", "avx512_vnni", "sse4.2"} <= intel
    assert not runtime.cpu_has_native_bf16(intel)
    assert "bf16" in runtime.parse_sysctl(SYSCTL_APPLE.format(bf16=1))
    assert "bf16" not in runtime.parse_sysctl(SYSCTL_APPLE.format(bf16=0))


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/cpuinfo")
def test_flags_read_from_this_machine_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.CPU_FLAGS_ENV)
    expected = runtime.parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    assert runtime.cpu_flags() == expected
    monkeypatch.setenv(runtime.CPU_FLAGS_ENV, "AVX2 avx512_BF16")
    assert runtime.cpu_flags() == {"avx2", "avx512_bf16"}


def _flags(monkeypatch: pytest.MonkeyPatch, flags: frozenset[str]) -> None:
    monkeypatch.setenv(runtime.CPU_FLAGS_ENV, " ".join(sorted(flags)))


@pytest.mark.parametrize(("flags", "figures"), [
    (ICE_LAKE, ["3.5x slower", "47.5 s vs 13.5 s", "65.2 s vs 18.9 s"]),
    (ZEN3, ["83 s in bf16 vs 0.25 s in fp32"])])
def test_explicit_bf16_without_native_bf16_warns_with_the_measured_slowdown(
        flags: frozenset[str], figures: list[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _flags(monkeypatch, flags)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        assert runtime.resolve_precision("bf16", torch.device("cpu"), training=True) == "bf16"
    (message,) = [r.getMessage() for r in caplog.records]
    assert "none of avx512_bf16/amx_bf16" in message and "use --precision fp32 or auto" in message
    for figure in figures:
        assert figure in message


@pytest.mark.parametrize("flags", [ZEN4, SAPPHIRE_RAPIDS, frozenset()])
def test_explicit_bf16_with_native_bf16_or_unknown_flags_is_quiet(
        flags: frozenset[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _flags(monkeypatch, flags)
    with caplog.at_level(logging.WARNING, logger="img2img"):
        runtime.check_precision("bf16", torch.device("cpu"))
    assert not caplog.records


@pytest.mark.parametrize(("flags", "line"), [
    (ZEN4, "precision auto -> bf16 (CPU has avx512_bf16)"),
    (ICE_LAKE, "precision auto -> fp32 (CPU has none of avx512_bf16/amx_bf16)")])
def test_auto_logs_its_choice_and_why(flags: frozenset[str], line: str,
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    _flags(monkeypatch, flags)
    with caplog.at_level(logging.INFO, logger="img2img"):
        chosen = runtime.resolve_precision("auto", torch.device("cpu"), training=False)
    assert chosen == line.split()[3]
    assert line in [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_is_the_default_of_train_and_translate() -> None:
    from img2img.cli import train_parser

    assert train_parser().parse_args(["--data", "d", "--out", "o"]).precision == "auto"
    args = ["--checkpoint", "c", "--input", "i", "--output", "o"]
    assert translate_parser().parse_args(args).precision == "auto"


@pytest.mark.parametrize(("flags", "expected"), [(ZEN4, "bf16"), (ICE_LAKE, "fp32")])
def test_translator_resolves_auto(flags: frozenset[str], expected: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _flags(monkeypatch, flags)
    kwargs = {"ngf": 8, "norm": "instance", "dropout": False, "upsample": "transpose"}
    net = build_generator("resnet_6blocks", **kwargs)
    meta = meta_for(net, "resnet_6blocks", kwargs, "cyclegan")
    translator = Translator(net, meta, torch.device("cpu"), "auto")
    assert translator.precision == expected
    out = translator(np.zeros((16, 16, 3), np.uint8))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    for i in range(2):
        write_image(root / "trainA" / f"a{i}.png", photo_like(36, 36, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(36, 36, seed=10 + i))
    return root


def test_run_records_the_resolved_precision_and_resume_chooses_again(
        toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json holds the precision used and what was asked for; a run started with
    auto and resumed on a CPU without native bf16 continues in fp32."""
    out = tmp_path / "run"
    args = ["--data", str(toy), "--out", str(out), "--steps", "1", "--ngf", "4", "--ndf", "4",
            "--crop-size", "32", "--load-size", "36", "--workers", "0", "--batch-size", "1",
            "--generator", "resnet_6blocks", "--quiet", "--device", "cpu",
            "--sample-every", "0"]
    _flags(monkeypatch, ZEN4)
    assert train_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["precision"], config["precision_requested"]) == ("bf16", "auto")

    _flags(monkeypatch, ICE_LAKE)
    assert train_main([*args, "--resume", "--steps", "2"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["precision"], config["precision_requested"]) == ("fp32", "auto")

    assert train_main([*args, "--resume", "--steps", "3", "--precision", "bf16"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["precision"], config["precision_requested"]) == ("bf16", "bf16")
