"""Per-task options: each method's flags and defaults come from its own file, a flag of
another method is refused naming it, and runs written before this still resume exactly."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from imgfactory import photo_like
from safetensors.torch import load_file

from img2img.cli import train_main, train_parser
from img2img.config import SHARED_FIELDS
from img2img.data.io import write_image
from img2img.engine.state import RESUME_FILE, load_resume, save_resume
from img2img.errors import UsageError
from img2img.nn import build_generator, discriminator_arguments, generator_arguments
from img2img.tasks import TASKS, make_config, task_class

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "flat_config_runs"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as when the fixtures were written


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        train_main([*args, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # help lines are wrapped


def test_help_shows_the_tasks_own_flags_and_defaults(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    sr = _help(capsys, "--task", "srgan")
    assert "--task srgan:" in sr and "--scale {2,4,8}" in sr and "--lambda-adv" in sr
    assert "Adam learning rate (default 0.0001)" in sr and "(default 96)" in sr
    assert "--lambda-identity" not in sr and "--pool-size" not in sr
    cycle = _help(capsys)  # the default task
    assert "--task cyclegan:" in cycle and "Adam learning rate (default 0.0002)" in cycle
    assert "fake images kept to train the discriminators (0: none) (default 50)" in cycle
    assert "--scale" not in cycle and "--lambda-l1" not in cycle
    p2p = _help(capsys, "--task", "pix2pix")
    assert "--generator GENERATOR" in p2p and "(default unet_256)" in p2p
    assert "--dropout, --no-dropout" in p2p and "(default on)" in p2p
    # --task names every registered method
    assert "|".join(TASKS) in cycle


@pytest.mark.parametrize(("task", "flag", "owner"), [
    ("cyclegan", "--lambda-l1", "pix2pix"), ("cyclegan", "--scale", "srgan"),
    ("srgan", "--pool-size", "cyclegan"), ("pix2pix", "--lambda-identity", "cyclegan"),
])
def test_a_flag_of_another_task_is_a_usage_error_naming_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, task: str, flag: str,
        owner: str) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["--task", task, "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                    flag, "2"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert f"{flag} is an option of --task {owner}" in err and f"not {task}" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match=f"{flag} is an option of --task {owner}"):
        make_config(task=task, **{flag[2:].replace("-", "_"): 2})


def test_every_task_declares_options_with_help_and_no_shared_names() -> None:
    for name in TASKS:
        cls = task_class(name)
        own = {f.name for f in fields(cls.Options)}
        assert not own & set(SHARED_FIELDS), (name, own & set(SHARED_FIELDS))
        assert all(f.metadata.get("help") for f in fields(cls.Options)), name
        parser = train_parser(name)
        assert parser.parse_args(["--data", "d", "--out", "o", "--task", name]).task == name


def test_architectures_keep_the_arguments_they_take() -> None:
    offered = {"ngf": 8, "norm": "instance", "dropout": False, "upsample": "resize",
               "num_downs": 5}
    assert generator_arguments("resnet_6blocks", **offered) == {
        "ngf": 8, "norm": "instance", "dropout": False, "upsample": "resize"}
    assert generator_arguments("unet", **offered) == {
        "ngf": 8, "norm": "instance", "dropout": False, "num_downs": 5}
    assert "num_downs" not in generator_arguments("unet_256", **offered)
    d = {"in_channels": 6, "ndf": 8, "norm": "batch", "n_layers": 2}
    assert discriminator_arguments("patchgan", **d) == d
    assert "n_layers" not in discriminator_arguments("pixelgan", **d)
    with pytest.raises(UsageError, match="unknown generator 'nope'"):
        generator_arguments("nope", ngf=8)


@pytest.fixture(scope="module")
def fixture_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The images the fixture runs were trained on (see fixtures/flat_config_runs/README)."""
    root = tmp_path_factory.mktemp("flat")
    for i in range(4):
        write_image(root / "trainA" / f"a{i}.png", photo_like(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(40, 40, seed=100 + i))
        write_image(root / "train" / f"{i}.png", photo_like(32, 32, seed=200 + i))
    return root


def _outputs(name: str, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """The fixture run's generator ``name`` with ``weights``, on fixed inputs."""
    arch, kwargs = {"G_A2B": ("resnet_6blocks", {"ngf": 2}),
                    "G": ("srresnet", {"scale": 2, "channels": 4, "n_blocks": 1})}[name]
    net = build_generator(arch, **kwargs)
    net.load_state_dict(weights)
    x = torch.stack([torch.from_numpy(photo_like(32, 32, seed=300 + i)).permute(2, 0, 1)
                     for i in range(2)]).float() / 127.5 - 1
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("source", ["resume.pt", "config.json"])
@pytest.mark.parametrize(("task", "sub", "name"), [("cyclegan", "", "G_A2B"),
                                                   ("srgan", "train", "G")])
def test_runs_written_before_per_task_options_resume_exactly(
        fixture_data: Path, tmp_path: Path, task: str, sub: str, name: str,
        source: str) -> None:
    """2 steps by the old code + 2 by this code == 4 steps by the old code, with the
    configuration read from the old resume.pt or (without one there) config.json.

    Bit for bit on the CPU kind that wrote the fixtures (AMD Zen 5). Another CPU's kernels
    round differently, and Adam's first steps scale gradients that are rounding noise (the
    biases before instance norm, tiny ngf-2 weights) to full-size steps, so there the
    network's outputs are compared instead. Two steps moved the outputs by ~0.2, a resume
    without the optimiser state misses by ~0.14; the same code on other CPUs differed by
    1.6e-6 (Intel Emerald Rapids) and 0.021 (AMD Zen 3, AVX2 only: weights up to 2.8e-4
    apart)."""
    out = Path(shutil.copytree(FIXTURES / task, tmp_path / task))
    if source == "config.json":
        state = load_resume(out / RESUME_FILE)
        del state["config"]
        save_resume(out / RESUME_FILE, state)
    args = ["--data", str(fixture_data / sub), "--out", str(out), "--resume"]
    assert train_main(args) == 0
    assert load_resume(out / RESUME_FILE)["step"] == 4
    got, want = load_file(str(out / f"{name}.safetensors")), load_file(
        str(out / f"straight_{name}.safetensors"))
    assert got.keys() == want.keys()
    if all(torch.equal(got[k], want[k]) for k in want):
        return
    torch.testing.assert_close(_outputs(name, got), _outputs(name, want), atol=0.05, rtol=0,
                               msg="resumed run differs")
