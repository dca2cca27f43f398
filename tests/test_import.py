"""Published checkpoints straight into ``img2img translate`` and through ``img2img import``.

The files are written the way the upstream projects save them (replicas of their key
layouts, from test_foreign_reference / test_foreign_sr); outputs are compared with those
replicas' own forwards, so value range ([-1, 1] vs [0, 1]) and the conversion are checked
end to end, with sizes, alpha and 16-bit kept as for native models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from test_foreign_reference import CreatesAFile, resnet
from test_foreign_sr import LAYOUTS, _rrdb_reference, _rrdb_state

from img2img import cli
from img2img.checkpoint import read_meta
from img2img.data.io import read_image, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys: pytest.CaptureFixture[str], main, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _to_unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / np.iinfo(img.dtype).max).permute(2, 0, 1)[None]


def _from_unit(y: torch.Tensor, dtype: type) -> np.ndarray:
    top = np.iinfo(dtype).max
    arr = y[0].clamp(0, 1).permute(1, 2, 0).numpy() * top
    return np.rint(arr).astype(dtype)


@pytest.fixture(scope="module")
def cyclegan_pth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    ref = resnet(n_blocks=6, ngf=4)
    path = tmp_path_factory.mktemp("pth") / "latest_net_G_A.pth"
    torch.save(ref.state_dict(), path)
    return path, ref


@pytest.fixture(scope="module")
def esrgan_pth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    names = LAYOUTS["basicsr"](1)
    sd = _rrdb_state(names, 3, 3, 1)  # x2, one upsampling stage
    path = tmp_path_factory.mktemp("pth") / "ESRGAN_x2.pth"
    torch.save({"params_ema": sd, "iter": 1000}, path)
    return path, sd, names


def test_reference_cyclegan_pth_translates_a_folder(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, cyclegan_pth) -> None:
    path, ref = cyclegan_pth
    rgb = photo_like(20, 28, seed=1)  # multiples of 4: no padding
    rgba = photo_like(16, 16, seed=2, channels=4)
    deep = photo_like(12, 20, seed=3, dtype=np.uint16)
    for name, img in (("a.png", rgb), ("b.png", rgba), ("c.png", deep)):
        write_image(tmp_path / "in" / name, img)
    code, out, err = _run(capsys, cli.translate_main, "--checkpoint", path, "--input",
                          tmp_path / "in", "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    got = read_image(tmp_path / "out" / "a.png")
    x = _to_unit(rgb) * 2 - 1
    with torch.no_grad():
        want = _from_unit((ref(x) + 1) / 2, np.uint8)
    assert got.shape == rgb.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    b = read_image(tmp_path / "out" / "b.png")
    assert b.shape == (16, 16, 4) and np.array_equal(b[..., 3], rgba[..., 3])
    c = read_image(tmp_path / "out" / "c.png")
    assert c.dtype == np.uint16 and c.shape == deep.shape


def test_esrgan_params_ema_runs_in_its_zero_to_one_range(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path, esrgan_pth) -> None:
    path, sd, names = esrgan_pth
    img = photo_like(12, 16, seed=4)
    write_image(tmp_path / "in" / "lr.png", img)
    code, out, err = _run(capsys, cli.translate_main, "--checkpoint", path, "--input",
                          tmp_path / "in", "--output", tmp_path / "out", "--quiet")
    assert code == 0, err
    got = read_image(tmp_path / "out" / "lr.png")
    with torch.no_grad():
        want = _from_unit(_rrdb_reference(sd, names, _to_unit(img), 1, 1), np.uint8)
    assert got.shape == (24, 32, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_import_writes_a_self_describing_checkpoint(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, esrgan_pth) -> None:
    path, _, _ = esrgan_pth
    out_file = tmp_path / "esrgan_x2.safetensors"
    code, out, err = _run(capsys, cli.import_main, path, "--out", out_file, "--quiet")
    assert code == 0, err
    assert "rrdbnet" in out and str(out_file) in out
    meta = read_meta(out_file)
    assert meta.arch == "rrdbnet" and meta.scale == 2 and meta.task == "sr"
    assert tuple(meta.value_range) == (0.0, 1.0)
    assert meta.extra["source"] == path.name
    assert meta.extra["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # the imported file and the original give the same pictures
    write_image(tmp_path / "in" / "x.png", photo_like(10, 14, seed=5))
    outs = []
    for ckpt, dst in ((path, "o1"), (out_file, "o2")):
        code, _, err = _run(capsys, cli.translate_main, "--checkpoint", ckpt, "--input",
                            tmp_path / "in", "--output", tmp_path / dst, "--quiet")
        assert code == 0, err
        outs.append(read_image(tmp_path / dst / "x.png"))
    assert np.array_equal(outs[0], outs[1])


def test_import_options_and_refusals(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     cyclegan_pth) -> None:
    path, _ = cyclegan_pth
    out_file = tmp_path / "h2z.safetensors"
    code, _, err = _run(capsys, cli.import_main, path, "--out", out_file, "--direction", "B2A")
    assert code == 0, err
    meta = read_meta(out_file)
    assert (meta.arch, meta.task, meta.direction) == ("resnet_6blocks", "cyclegan", "B2A")
    code, _, err = _run(capsys, cli.import_main, out_file, "--out", tmp_path / "again.safetensors")
    assert code == 2 and "already an img2img checkpoint" in err
    code, _, err = _run(capsys, cli.import_main, path, "--out", tmp_path / "x.pth")
    assert code == 2 and ".safetensors" in err
    code, _, err = _run(capsys, cli.import_main, tmp_path / "nope.pth", "--out", out_file)
    assert code == 2 and "nope.pth" in err


def test_a_malicious_pth_is_refused_by_translate(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"
    evil = tmp_path / "latest_net_G.pth"
    evil.write_bytes(pickle.dumps({"model.1.weight": CreatesAFile(str(marker))}, protocol=2))
    write_image(tmp_path / "in" / "a.png", photo_like(8, 8))
    code, _, err = _run(capsys, cli.translate_main, "--checkpoint", evil, "--input",
                        tmp_path / "in", "--output", tmp_path / "out")
    assert code == 2 and str(evil) in err and "Traceback" not in err
    assert not marker.exists(), "the pickle's code must never run"
    assert not (tmp_path / "out").exists()


def test_per_image_norm_is_batch_norm_in_training_mode_on_one_image(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from test_foreign_reference import RefUnetGenerator, randomise

    ref = randomise(RefUnetGenerator(3, 3, 7, 4, "batch", dropout=False))
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    img = photo_like(128, 128, seed=6)
    write_image(tmp_path / "in" / "a.png", img)
    x = _to_unit(img) * 2 - 1
    results = {}
    for mode, flags in (("eval", []), ("per_image", ["--per-image-norm"]),
                        ("again", ["--per-image-norm"])):
        code, _, err = _run(capsys, cli.translate_main, "--checkpoint", path, "--input",
                            tmp_path / "in", "--output", tmp_path / "out", "--quiet",
                            "--overwrite", *flags)
        assert code == 0, err
        results[mode] = read_image(tmp_path / "out" / "a.png").astype(int)
    with torch.no_grad():
        want_eval = _from_unit((ref.eval()(x) + 1) / 2, np.uint8).astype(int)
        want_train = _from_unit((ref.train()(x) + 1) / 2, np.uint8).astype(int)
    assert np.abs(results["eval"] - want_eval).max() <= 1
    assert np.abs(results["per_image"] - want_train).max() <= 1
    assert np.abs(want_eval - want_train).mean() > 2, "the two modes must differ to prove it"
    assert np.array_equal(results["per_image"], results["again"]), "running stats untouched"
