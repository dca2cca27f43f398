"""FID/KID with the real 2015-12-05 Inception weights (the ``img2img[metrics]`` extra, which
``make test`` installs): skipped when the extra is absent. A handful of small images keeps
this to seconds on a CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.data.io import write_image
from img2img.errors import UsageError
from img2img.metrics import inception_weights as iw
from img2img.metrics.features import extract_features, prepare
from img2img.metrics.fid import FeatureStats, fid_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = iw._packaged_default()
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(DEFAULT is None, reason="needs pip install 'img2img[metrics]'")]
N = 8


def _evaluate_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_tool_evaluate_fid",
                                                  ROOT / "tools" / "evaluate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _textured(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """Photo-like colours with edges and fine texture (so blurring visibly removes detail)."""
    rng = np.random.default_rng(seed)
    img = photo_like(h, w, seed=seed).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    fy, fx = rng.uniform(0.2, 0.9, 2)
    img += 40 * np.sign(np.sin(fy * yy + fx * xx))[:, :, None]
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def inception() -> tuple[torch.nn.Module, iw.InceptionWeights]:
    return iw.load_inception()


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [_textured(i) for i in range(N)]


def _stats(net: torch.nn.Module, imgs: list[np.ndarray], mode: str = "clean") -> FeatureStats:
    got = extract_features(((str(i), im) for i, im in enumerate(imgs)), net, mode, quiet=True)
    return FeatureStats.from_features(got.features, mode, "w")


def test_toolkit_network_gives_the_shipped_torchscripts_features(inception, images) -> None:
    net, weights = inception
    assert weights.file_sha256 == iw.DEFAULT_1_SHA256
    scripted = iw.load_torchscript(weights.path)
    for mode in ("clean", "legacy-pytorch"):
        x = torch.stack([prepare(im, mode) for im in images[:3]])
        with torch.no_grad():
            ours, theirs = net(x), scripted(x)
        assert ours.shape == theirs.shape == (3, 2048)
        assert float(theirs.abs().max()) > 1.0  # real activations, not zeros
        assert float((ours - theirs).abs().max()) < 1e-4


def test_fid_grows_with_blur_and_with_colour_shift(inception, images) -> None:
    net, _ = inception
    ref = _stats(net, images)
    assert abs(fid_of(_stats(net, images), ref)) < 1e-3  # the same images: zero

    def blurred(sigma: float) -> list[np.ndarray]:
        return [cv2.GaussianBlur(im, (0, 0), sigma) for im in images]

    def shifted(amount: int) -> list[np.ndarray]:
        off = np.array([amount, 0, -amount])
        return [np.clip(im.astype(int) + off, 0, 255).astype(np.uint8) for im in images]

    for distort, levels in ((blurred, (0.7, 1.5, 3.0)), (shifted, (15, 35, 70))):
        fids = [fid_of(_stats(net, distort(level)), ref) for level in levels]
        assert 0.5 < fids[0] < fids[1] < fids[2], (distort.__name__, fids)


def test_evaluate_tool_end_to_end(inception, images, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for i, im in enumerate(images[:4]):
        write_image(a / f"{i}.png", im)
        write_image(b / "sub" / f"{i}.jpg", cv2.GaussianBlur(im, (0, 0), 2.0))
    (a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    tool = _evaluate_tool()
    out_json, stats = tmp_path / "r.json", tmp_path / "b.npz"
    # the same folder: FID ~0; a broken file is reported, the rest still scored, exit 1
    code = tool.main(["--pred", str(a), "--ref", str(a), "--fid", "--kid", "--device", "cpu",
                      "--json", str(out_json), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "broken.png" in err
    assert "has 4 images, fewer than 2048" in err
    data = json.loads(out_json.read_text())
    assert abs(data["fid"]) < 1e-3 and data["counts"] == {"ref": 4, "pred": 4}
    assert data["precision"] == "fp32" and data["weights"]["file_sha256"] == iw.DEFAULT_1_SHA256
    (a / "broken.png").unlink()
    # statistics saved once, reused, and refused under the other mode
    assert tool.main(["--ref", str(b), "--save-stats", str(stats), "--quiet"]) == 0
    capsys.readouterr()
    code = tool.main(["--pred", str(a), "--ref", str(b), "--fid", "--kid", "--quiet",
                      "--json", str(out_json)])
    direct = json.loads(out_json.read_text())
    assert code == 0
    code = tool.main(["--pred", str(a), "--ref", str(stats), "--fid", "--kid", "--quiet",
                      "--json", str(out_json)])
    reused = json.loads(out_json.read_text())
    out, err = capsys.readouterr()
    assert code == 0 and "FID " in out and "KID x1000 " in out
    assert reused["fid"] == pytest.approx(direct["fid"], abs=1e-9) and direct["fid"] > 1
    assert reused["kid"]["mean_x1000"] == pytest.approx(direct["kid"]["mean_x1000"], abs=1e-9)
    code = tool.main(["--pred", str(a), "--ref", str(stats), "--fid", "--quiet",
                      "--fid-mode", "legacy-pytorch"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {stats}: statistics of --fid-mode clean, this run uses "
        "--fid-mode legacy-pytorch"]
    # paired flags do not mix with the unpaired scores
    assert tool.main(["--pred", str(a), "--ref", str(b), "--fid", "--y-channel"]) == 2


def test_torchscript_layers_map_by_name_shape_and_geometry(inception) -> None:
    net, weights = inception
    tensors = iw.read_torchscript_tensors(weights.path)
    # StyleGAN's own file: `layers` at the top and a 1008-class `output` beside it
    stylegan = {k.removeprefix("net."): v for k, v in tensors.items()}
    stylegan["output.weight"] = torch.zeros(1008, 2048)
    state = iw.torchscript_state_dict(stylegan, net, "inception-2015-12-05.pt")
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items() if k in state)
    bad = dict(tensors, **{"net.layers.mixed_4.tower.conv_1.padding": [3, 0]})
    with pytest.raises(UsageError, match="mixed_4.tower.conv_1 has stride/padding"):
        iw.torchscript_state_dict(bad, net, "x.pt")
    bad = {k: v for k, v in tensors.items() if k != "net.layers.mixed_10.tower_2_conv.var"}
    with pytest.raises(UsageError, match="tower_2_conv.var missing or not of shape"):
        iw.torchscript_state_dict(bad, net, "x.pt")
    bad = dict(tensors, **{"net.layers.mixed_10.extra.weight": torch.zeros(1)})
    with pytest.raises(UsageError, match="unexpected tensors"):
        iw.torchscript_state_dict(bad, net, "x.pt")
