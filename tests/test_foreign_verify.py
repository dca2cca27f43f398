"""The independent forwards of the original layouts, and the import check built on them.

Every case of test_foreign_reference / test_foreign_sr (their parameter lists are read from
those tests, so a case added there is checked here too) is run by
``reference_forward`` on the state dict as upstream saves it and compared with that test's
own replica or functional forward: the verifier is itself checked against a third account
of each network. Then ``img2img import`` must refuse a conversion that is subtly wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import test_foreign_reference as ref_tests
import test_foreign_sr as sr_tests
import torch

from img2img import cli
from img2img.checkpoint import read_meta
from img2img.foreign import Imported, recognise
from img2img.foreign.verify import reference_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cases(test) -> list[tuple]:
    """The argument values of ``test``'s parametrize mark."""
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    return list(mark.args[1])


def _same(state: dict, want_fn, x: torch.Tensor) -> Imported:
    imported = recognise(state)
    got = reference_forward(imported, state, x)
    with torch.no_grad():
        want = want_fn(x.clone())
    assert got is not None and got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-5
    assert want.std() > 0.05  # not two constant images
    return imported


def _signed(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize(
    "case", _cases(ref_tests.test_reference_resnet_is_recognised_and_computes_the_same))
def test_reference_resnet_forward_matches_the_replica(case: tuple) -> None:
    n_blocks, norm, dropout, _ = case
    ref = ref_tests.resnet(n_blocks, norm, dropout)
    _same(ref.state_dict(), ref, _signed((2, 3, 32, 32)))


def test_reference_resnet_forward_reads_the_channels() -> None:
    ref = ref_tests.resnet(2, ngf=8, in_nc=1, out_nc=4)
    _same(ref.state_dict(), ref, _signed((2, 1, 16, 16)))


@pytest.mark.parametrize(
    "case", _cases(ref_tests.test_reference_unet_is_recognised_and_computes_the_same))
def test_reference_unet_forward_matches_the_replica(case: tuple) -> None:
    num_downs, ngf, norm, _, size = case
    ref = ref_tests.randomise(ref_tests.RefUnetGenerator(3, 3, num_downs, ngf, norm))
    _same(ref.state_dict(), ref, _signed((2, 3, size, size)))


def test_reference_unet_forward_without_batch_counters() -> None:
    ref = ref_tests.randomise(ref_tests.RefUnetGenerator(3, 3, 5, 4, "batch"))
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    _same(sd, ref, _signed((1, 3, 32, 32)))


@pytest.mark.parametrize("case", sorted(sr_tests.RRDB_CASES))
def test_rrdbnet_forward_matches_the_functional_one(case: str) -> None:
    layout, cin, n_up, unshuffle, scale = sr_tests.RRDB_CASES[case]
    names = sr_tests.LAYOUTS[layout](n_up)
    sd = sr_tests._rrdb_state(names, cin, 3, n_up)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    imported = _same(sd, lambda t: sr_tests._rrdb_reference(sd, names, t, n_up, unshuffle), x)
    assert imported.scale == scale


@pytest.mark.parametrize("case", _cases(sr_tests.test_msrresnet_checkpoints_convert_exactly))
def test_msrresnet_forward_matches_the_functional_one(case: tuple) -> None:
    layout, scale = case
    sd = sr_tests._msr_state(layout, scale)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    _same(sd, lambda t: sr_tests._msr_reference(sd, layout, t, scale), x)


def test_a_family_without_an_independent_forward_gives_none() -> None:
    sd = ref_tests.resnet(2).state_dict()
    imported = recognise(sd)
    other = Imported("some spandrel model", imported.arch, imported.kwargs,
                     imported.state_dict, "cyclegan")  # no notes["layout"]
    assert reference_forward(imported, sd, _signed((1, 3, 16, 16))) is not None
    assert reference_forward(other, sd, _signed((1, 3, 16, 16))) is None


# --- img2img import --------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli.import_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _files(tmp_path: Path) -> dict[str, object]:
    """Checkpoint files of each family, as upstream saves them (tiny widths)."""
    rrdb = sr_tests._rrdb_state(sr_tests.LAYOUTS["original"](2), 3, 3, 2)
    return {
        "cyclegan": ref_tests.resnet(6, ngf=4).state_dict(),
        "pix2pix": ref_tests.randomise(ref_tests.RefUnetGenerator(3, 3, 5, 4, "batch"))
        .state_dict(),
        "esrgan": {"params_ema": sr_tests._rrdb_state(sr_tests.LAYOUTS["basicsr"](1), 3, 3, 1)},
        "esrgan-original": rrdb,
        "msrresnet-mmsr": sr_tests._msr_state("mmsr", 2),
    }


@pytest.mark.parametrize("family", ["cyclegan", "pix2pix", "esrgan", "esrgan-original",
                                    "msrresnet-mmsr"])
def test_import_prints_and_records_the_parity_figure(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, family: str) -> None:
    src = tmp_path / f"{family}.pth"
    torch.save(_files(tmp_path)[family], src)
    out_file = tmp_path / f"{family}.safetensors"
    code, out, err = _run(capsys, src, "--out", out_file, "--quiet")
    assert code == 0, err
    found = re.search(r"matches the original layout \(max diff ([0-9.e+-]+)\)", out)
    assert found, out
    assert float(found.group(1)) < 1e-4
    recorded = read_meta(out_file).extra["parity_max_diff"]
    assert isinstance(recorded, float) and recorded < 1e-4


def _swapping(recogniser, a: str, b: str):
    """``recogniser`` with two same-shaped tensors of its converted state dict exchanged."""
    def broken(state):
        imported = recogniser(state)
        if imported is not None:
            sd = imported.state_dict
            assert sd[a].shape == sd[b].shape
            sd[a], sd[b] = sd[b], sd[a]
        return imported
    return broken


@pytest.mark.parametrize(("family", "target", "a", "b"), [
    ("cyclegan", "img2img.foreign.recognise_resnet", "model.10.block.1.weight",
     "model.11.block.1.weight"),
    ("esrgan", "img2img.foreign.basicsr.recognise_rrdbnet", "conv_body.weight",
     "conv_hr.weight"),
])
def test_a_wrong_conversion_is_refused_and_nothing_written(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        family: str, target: str, a: str, b: str) -> None:
    src = tmp_path / f"{family}.pth"
    torch.save(_files(tmp_path)[family], src)
    module, _, name = target.rpartition(".")
    monkeypatch.setattr(f"{module}.{name}", _swapping(
        getattr(__import__(module, fromlist=[name]), name), a, b))
    out_file = tmp_path / "out" / "converted.safetensors"
    out_file.parent.mkdir()
    code, out, err = _run(capsys, src, "--out", out_file)
    assert code != 0 and out == ""
    assert str(src) in err and "does not reproduce the original" in err
    found = re.search(r"max difference ([0-9.e+-]+)", err)
    assert found and float(found.group(1)) > 1e-4, err
    assert "Traceback" not in err
    assert list(out_file.parent.iterdir()) == []  # no file, no temporary left behind
