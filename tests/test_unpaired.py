"""Unpaired dataset, preprocessing modes and the image pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.data.io import write_image
from img2img.data.transforms import build_transform
from img2img.data.unpaired import UnpairedDataset
from img2img.tasks.image_pool import ImagePool


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for i in range(5):
        write_image(tmp_path / "trainA" / f"a{i}.png", photo_like(40, 50, seed=i))
    for i in range(3):  # B nested one level deeper and 16-bit / grayscale mixed in
        write_image(tmp_path / "trainB" / "sub" / f"b{i}.png", photo_like(60, 45, seed=10 + i))
    write_image(tmp_path / "trainB" / "gray.png", photo_like(48, 48, seed=20, channels=1))
    write_image(tmp_path / "trainB" / "deep.png", photo_like(48, 48, seed=21, dtype=np.uint16))
    return tmp_path


def test_length_shapes_and_ranges(root: Path) -> None:
    ds = UnpairedDataset(root, load_size=36, crop_size=32)
    assert len(ds) == 5  # max(|A|, |B|)
    for k in range(12):  # counters past one epoch keep working
        item = ds[k]
        for key in ("A", "B"):
            t = item[key]
            assert t.shape == (3, 32, 32) and t.dtype == torch.float32
            assert -1.0 <= float(t.min()) and float(t.max()) <= 1.0
    epoch0 = sorted(ds[k]["A_path"] for k in range(5))
    assert epoch0 == sorted(str(p) for p in (root / "trainA").iterdir()), "each A once per epoch"
    assert {ds[k]["B_path"] for k in range(40)} == {str(p) for p in ds.files_b}, "B is random"


def test_samples_are_pure_functions_of_the_counter(root: Path) -> None:
    a, b = UnpairedDataset(root, crop_size=32, load_size=40), UnpairedDataset(root, crop_size=32,
                                                                             load_size=40)
    for k in (7, 0, 3):  # any order
        x, y = a[k], b[k]
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    other = UnpairedDataset(root, crop_size=32, load_size=40, seed=1)
    assert any(other[k]["B_path"] != a[k]["B_path"] or not torch.equal(other[k]["A"], a[k]["A"])
               for k in range(5))


def test_direction_swaps_folders(root: Path) -> None:
    ds = UnpairedDataset(root, direction="BtoA", crop_size=32, load_size=36)
    assert len(ds.files_a) == 5 and "trainB" in str(ds.files_a[0])


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="trainA"):
        UnpairedDataset(tmp_path)


@pytest.mark.parametrize("mode,shape", [("resize_and_crop", (24, 24)), ("crop", (24, 24)),
                                        ("scale_width", (24, 24)), ("none", (36, 48))])
def test_preprocess_modes(mode: str, shape: tuple[int, int]) -> None:
    fn = build_transform(mode, load_size=30, crop_size=24, flip=True)
    img = photo_like(38, 50, seed=1)
    out = fn(seed=5, image=img)["image"]
    assert out.shape[:2] == shape
    assert np.array_equal(out, fn(seed=5, image=img)["image"]), "same seed, same result"


def test_additional_targets_share_crop_and_flip() -> None:
    fn = build_transform("crop", load_size=32, crop_size=16, flip=True,
                         additional_targets={"image_b": "image"})
    img = photo_like(40, 40, seed=2)
    for seed in range(6):
        out = fn(seed=seed, image=img, image_b=img.copy())
        assert np.array_equal(out["image"], out["image_b"])


def test_crop_larger_than_load_is_refused() -> None:
    with pytest.raises(ValueError, match="crop size"):
        build_transform("resize_and_crop", load_size=32, crop_size=64)


def test_image_pool_mixes_history_and_resumes() -> None:
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first), "filling up returns the new images"
    state = pool.state_dict()
    clone = ImagePool(size=4, seed=99)
    clone.load_state_dict(state)
    new = torch.full((8, 1, 1, 1), 10.0)
    out, out_clone = pool.query(new), clone.query(new)
    assert torch.equal(out, out_clone), "restored pool makes the same choices"
    old = (out < 10).sum().item()
    assert 0 < old < 8, "about half the returned images come from the history"
    assert ImagePool(size=0).query(new).equal(new)
