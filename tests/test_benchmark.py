"""img2img benchmark (tools/benchmark.py) runs end to end in --quick mode and reports what it
promises.

No assertion is made on any time or rate (the machine may be busy)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from img2img.commands import benchmark as bench_command

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The command's module (run in-process: no second torch import)."""
    return bench_command


def test_the_script_is_the_command() -> None:
    spec = importlib.util.spec_from_file_location("img2img_benchmark_tool", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main is bench_command.benchmark_main


def test_quick_ceiling_train_translate(bench: ModuleType, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = bench.benchmark_main(["--quick", "--json", str(out), "--only", "train,translate",
                                 "--tasks", "cyclegan", "--precision", "fp32", "--repeats", "1",
                                 "--warmup", "0", "--num-images", "4"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr[-3000:]
    report = json.loads(out.read_text())
    machine = report["machine"]
    for key in ("cpu", "logical_cpus", "torch", "device", "torch_threads", "date"):
        assert machine[key] not in (None, ""), key
    assert machine["device"] == "cpu" or machine["device"].startswith("cuda")
    assert report["settings"]["precision"] == ["fp32"]

    # the ceiling is measured with train, first
    assert report["ceiling"]["fp32"]["gflops"] > 0
    step, ref = report["train"]
    assert step["task"] == "cyclegan" and step["precision"] == "fp32"
    assert step["gflop_per_step"] > 0 and step["step_s"] > 0
    assert 0 < step["ceiling_fraction"]
    # the reference-style step, timed in turns with ours, and the ratio
    assert ref["task"] == "cyclegan reference-style" and ref["step_s"] > 0
    assert step["vs_reference"] == ref["ours_vs_reference"] == pytest.approx(
        step["step_s"] / ref["step_s"])
    assert len(ref["step_times_s"]) == len(step["step_times_s"])
    assert ref["ours_vs_reference_per_turn"] == pytest.approx(
        [a / b for a, b in zip(step["step_times_s"], ref["step_times_s"], strict=True)])
    assert step["vs_reference_flops"] == pytest.approx(1, abs=0.03)

    tr = report["translate"]
    assert tr["images"] == 4 and tr["baseline"]["images_per_s"] > 0
    fp32 = tr["by_precision"]["fp32"]
    for key in ("folder_images_per_s", "model_only_images_per_s", "speedup_vs_baseline",
                "end_to_end_vs_model_only"):
        assert fp32[key] > 0, key
    assert fp32["max_abs_diff_255"] <= 2  # same precision: batched vs per-image

    names = [r["name"] for r in report["rows"]]
    assert names[0] == "ceiling conv3x3"
    assert {"train cyclegan", "train cyclegan reference-style",
            "train cyclegan / reference-style", "translate baseline loop", "translate folder",
            "translate model-only"} <= set(names)
    # the table: a header, then one line per row
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["name", "precision",
                                                                             "value"])
    body = lines[header + 2: header + 2 + len(names)]
    assert [line.startswith(n) for line, n in zip(body, names, strict=True)] == [True] * len(names)
    assert "GFLOP/s" in stdout and "img/s" in stdout


def test_fp16_on_cpu_is_a_usage_error(bench: ModuleType, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.json"
    code = bench.benchmark_main(["--device", "cpu", "--precision", "fp16", "--only", "ceiling",
                                 "--json", str(out)])
    assert code == 2
    assert "fp16" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--only", "nope"], ["--tasks", "gan"],
                                  ["--precision", "fp32,int4"]])
def test_bad_choice(bench: ModuleType, flag: list[str],
                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.benchmark_main(flag)
    assert exc.value.code == 2 and "choose from" in capsys.readouterr().err


@pytest.mark.parametrize("flags", ["avx2 avx512f avx512_bf16", "amx_bf16",
                                   "avx2 avx512f avx512_vnni", "avx2"])
def test_default_precisions_leave_out_bf16_where_the_cpu_lacks_native_bf16(
        bench: ModuleType, flags: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ice Lake (AVX-512 + VNNI, no avx512_bf16) runs bf16 3.5x slower: left out like AVX2."""
    monkeypatch.setenv("IMG2IMG_CPU_FLAGS", flags)
    fast = "bf16" in flags
    ns = bench.benchmark_parser().parse_args([])
    assert bench._precisions(ns, torch.device("cpu")) == (["fp32", "bf16"] if fast else ["fp32"])
    forced = bench.benchmark_parser().parse_args(["--precision", "bf16"])
    assert bench._precisions(forced, torch.device("cpu")) == ["bf16"]
    auto = bench.benchmark_parser().parse_args(["--precision", "auto,fp32"])
    assert bench._precisions(auto, torch.device("cpu")) == (["bf16", "fp32"] if fast
                                                            else ["fp32"])


def test_report_names_the_flags_seen_and_the_auto_choice(
        bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2IMG_CPU_FLAGS", "fpu avx2 avx512f avx512_vnni")  # Ice Lake
    monkeypatch.setattr(bench, "run", lambda *a: ([], {}))  # the sections are tested above
    out = tmp_path / "b.json"
    assert bench.benchmark_main(["--device", "cpu", "--only", "ceiling", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cpu flags seen: avx2 avx512f avx512_vnni; precision auto -> fp32 (CPU has none " \
           "of avx512_bf16/amx_bf16)" in printed
    machine = json.loads(out.read_text())["machine"]
    assert machine["cpu_flags"] == ["avx2", "avx512f", "avx512_vnni"]
    assert machine["precision_auto"] == "fp32"


def test_cut_rows_beside_cyclegan_do_less_work(bench: ModuleType, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Each task gives its own benchmark configuration. At the published widths (ngf 64,
    batch 1) FastCUT's step (one generator, one discriminator) costs at most 0.6 of
    CycleGAN's and CUT's (with its identity pass) at most 0.8, counted in FLOPs
    (deterministic; the README has the timings). Counted on 128x128 crops, where the
    ratios are those of the published 256x256 within 0.01 (0.30 and 0.58) in half the
    counting time (the counter runs the real step); the quick sizes are too small for
    them: PatchNCE's head costs the same at any size."""
    out = tmp_path / "bench.json"
    code = bench.benchmark_main(["--quick", "--json", str(out), "--only", "train", "--tasks",
                                 "cyclegan,cut,fastcut", "--precision", "fp32", "--repeats",
                                 "1", "--warmup", "0"])
    assert code == 0, capsys.readouterr().err[-3000:]
    steps = {r["task"]: r for r in json.loads(out.read_text())["train"]}
    assert set(steps) == {"cyclegan", "cyclegan reference-style", "cut", "fastcut"}
    assert "PatchNCE" in steps["cut"]["config"] and "no identity" in steps["fastcut"]["config"]
    assert "train fastcut" in capsys.readouterr().out

    from img2img.bench.train import build, count_flops, make_batch, specs

    cpu, flops = torch.device("cpu"), {}
    for task in ("cyclegan", "cut", "fastcut"):
        (spec,) = specs(task, quick=False, size=128)
        assert spec.a_shape == (1, 3, 128, 128) and spec.settings["ngf"] == 64
        flops[task] = count_flops(build(spec, cpu, "fp32"), make_batch(spec, cpu))
    assert flops["fastcut"] < 0.6 * flops["cyclegan"], flops
    assert flops["cut"] < 0.8 * flops["cyclegan"], flops


def test_sr_section_runs_the_installed_command_from_any_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a script path the SR rows run ``img2img translate`` (what an installed wheel
    has; no tools/ folder), here from a folder outside the checkout."""
    from img2img.bench import ort
    from img2img.bench.sr import sr_tiled

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ort, "missing", lambda: "left out here")  # the ONNX rows: test_onnx
    rows, results = sr_tiled(torch.device("cpu"), ["fp32"], True, tmp_path / "work", size=24,
                             tile=16)
    run = results["by_precision"]["fp32"]
    assert run["output"] == "96x96.png" and run["args"][0] == "translate"
    assert run["seconds"] > 0 and run["floor_8x8_seconds"] > 0
    assert [r.name for r in rows] == ["sr x4 tiled", "sr x4 tiled peak RSS",
                                      "sr x4 tiled"]
    assert rows[-1].notes == "not run: left out here"


def test_int8_rows_beside_fp32(bench: ModuleType, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """``--precision fp32,int8``: translate and sr rows for int8, with the calibration in
    the folder time and the PSNR against the fp32 outputs."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "bench.json"
    code = bench.benchmark_main(["--quick", "--device", "cpu", "--json", str(out), "--only",
                                 "translate,sr", "--precision", "fp32,int8", "--num-images",
                                 "2", "--sr-size", "48", "--tile", "32"])
    _, stderr = capsys.readouterr()
    assert code == 0, stderr[-3000:]
    report = json.loads(out.read_text())
    int8 = report["translate"]["by_precision"]["int8"]
    assert int8["calibration_s"] > 0
    assert int8["folder_s"] > int8["calibration_s"]  # the calibration is in the folder time
    assert int8["folder_cached_images_per_s"] > int8["folder_images_per_s"]
    assert 15 < int8["psnr_vs_fp32_db"] < 100  # random weights: far from exact, not broken
    sr = report["sr"]["by_precision"]
    assert "--precision" in sr["int8"]["args"] and "int8" in sr["int8"]["args"]
    assert sr["int8"]["psnr_vs_fp32_db"] > 30
    assert sr["int8"]["floor_reused_int8_model"]  # the 8x8 floor run did not quantize again
    rows = {(r["name"], r["precision"]) for r in report["rows"]}
    assert {("translate folder", "int8"), ("translate PSNR vs fp32", "int8"),
            ("sr x4 tiled", "int8"), ("sr x4 tiled PSNR vs fp32", "int8")} <= rows
    assert not any(r["precision"] == "int8" for r in report["rows"]
                   if r["name"].startswith(("ceiling", "train")))


def test_reference_style_cyclegan_step_trains_every_parameter_of_the_same_networks() -> None:
    """The yardstick of the train rows: the reference implementation's step in plain
    PyTorch, at tiny size, moves every weight of nets shaped like the toolkit's."""
    from img2img.bench.reference_cyclegan import ReferenceCycleGAN
    from img2img.nn import build_discriminator, build_generator

    ref = ReferenceCycleGAN(ngf=8, ndf=8)
    numel = [sum(p.numel() for p in net.parameters()) for net in ref.nets()]
    ours = [build_generator("resnet_9blocks", ngf=8), build_discriminator("patchgan", ndf=8)]
    assert numel == [sum(p.numel() for p in n.parameters()) for n in ours for _ in (0, 1)]
    before = [p.detach().clone() for net in ref.nets() for p in net.parameters()]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
    losses = ref.step(a, b)
    assert set(losses) == {"G", "D_A", "D_B"} and all(v > 0 for v in losses.values())
    after = [p.detach() for net in ref.nets() for p in net.parameters()]
    assert all(not torch.equal(x, y) for x, y in zip(before, after, strict=True))
    assert all(p.requires_grad for net in ref.nets() for p in net.parameters())


def test_reference_style_step_does_the_work_of_ours() -> None:
    """Same FLOPs (convs and matmuls, forward + backward) as the toolkit's CycleGAN step,
    so "x the reference" compares implementations, not amounts of work."""
    from img2img.bench.reference_cyclegan import ReferenceCycleGAN
    from img2img.bench.train import build, count_flops, make_batch, reference_flops, specs

    cpu = torch.device("cpu")
    (spec,) = specs("cyclegan", quick=True, size=32)
    assert spec.a_shape == (1, 3, 32, 32) and "32x32" in spec.describe
    batch = make_batch(spec, cpu)
    ours = count_flops(build(spec, cpu, "fp32"), batch)
    ref = reference_flops(ReferenceCycleGAN(ngf=16, ndf=16), batch)
    assert ours == pytest.approx(ref, rel=0.01)


def test_alternating_timer_takes_turns_after_its_warmup_rounds() -> None:
    """Two steps compared in one run are timed in turns, so a machine that slows down
    halfway slows both."""
    from img2img.bench.common import time_alternating

    calls: list[str] = []
    times = time_alternating([lambda: calls.append("a"), lambda: calls.append("b")],
                             repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert [len(t) for t in times] == [3, 3] and all(x >= 0 for t in times for x in t)


def test_a_failing_reference_step_leaves_our_own_train_rows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference-style step breaking mid-timing is one FAILED row; our step's rows and
    timing stand."""
    from img2img.bench import train
    from img2img.bench.reference_cyclegan import ReferenceCycleGAN

    calls: list[int] = []
    original = ReferenceCycleGAN.step

    def breaks_when_timed(self: ReferenceCycleGAN, a: torch.Tensor, b: torch.Tensor) -> None:
        calls.append(1)
        if len(calls) > 1:  # the FLOP count's step works, the first timed one fails
            raise RuntimeError("reference broke")
        original(self, a, b)

    monkeypatch.setattr(ReferenceCycleGAN, "step", breaks_when_timed)
    rows, results = train.train_steps(["cyclegan"], torch.device("cpu"), ["fp32"], True,
                                      repeats=2, warmup=0, ceilings={})
    ours, ref = results
    assert ours["task"] == "cyclegan" and len(ours["step_times_s"]) == 2
    assert ref == {"task": "cyclegan reference-style", "precision": "fp32",
                   "error": "RuntimeError: reference broke"}
    assert [r.name for r in rows] == ["train cyclegan", "train cyclegan",
                                      "train cyclegan reference-style FAILED"]
    assert len(calls) == 2  # not called again once it failed
