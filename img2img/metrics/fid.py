"""FID and KID of two feature sets, and reusable statistics files.

* :func:`frechet_distance`: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` (Heusel et al.
  2017); the trace of the square root is taken as a nuclear norm (its docstring says why and
  how it agrees with pytorch-fid's and clean-fid's ``scipy.linalg.sqrtm``).
* :func:`kid`: Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 with the
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` (degree 3, gamma 1/d = 1/2048, coef 1),
  averaged over 100 random subsets of ``min(1000, n_pred, n_ref)`` images per side; returns
  the mean and the standard deviation over subsets (papers print both x1000).
* :class:`FeatureStats`: mean, covariance and the features themselves (KID needs them), with
  the mode, the weights' fingerprint and the image count. Saved as ``.npz`` without pickles;
  loading one refuses statistics of another mode or other weights.

With fewer images than features (2048) the covariance is rank-deficient; FID is still
computed, as the references do, but it is biased upwards the smaller the set, so only runs
with the same image counts compare (:func:`small_sample_warning`).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from img2img import __version__
from img2img.data.io import atomic_write_bytes
from img2img.errors import UsageError
from img2img.metrics.inception import FEATURE_DIM

__all__ = ["FIDError", "FeatureStats", "fid_of", "frechet_distance", "kid", "small_sample_warning"]

STATS_FORMAT = "img2img-inception-stats-1"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


class FIDError(ArithmeticError):
    """The Frechet distance has no finite value for these statistics."""


def _sqrt_factor(sigma: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """A matrix ``L`` with ``L @ L.T == sigma``: the centred features over sqrt(n - 1) when
    there are no more images than dimensions (exact, and small), else a Cholesky factor (an
    eigen-decomposition with negative rounding noise clipped when sigma is singular)."""
    if features is not None and len(features) <= sigma.shape[0]:
        f64 = features.astype(np.float64)
        return (f64 - f64.mean(axis=0)).T / np.sqrt(len(f64) - 1)
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh((sigma + sigma.T) / 2)
        return v * np.sqrt(np.clip(w, 0, None))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     features1: np.ndarray | None = None, features2: np.ndarray | None = None,
                     ) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ``|mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrtm(sigma1 sigma2))``. The last trace
    is the sum of the square roots of the eigenvalues of ``sigma1 sigma2``, which are the
    squared singular values of ``L1.T @ L2`` for any factors ``Li @ Li.T == sigmai``: so it is
    the nuclear norm of that matrix, real and non-negative by construction. pytorch-fid and
    clean-fid take ``scipy.linalg.sqrtm`` of the product instead: the same number (to 1e-9
    relative on full-rank statistics, see tests/test_fid.py), but 30-60 s for 2048 x 2048 on
    a 2-core CPU, and with rounding noise in the roots of the near-zero eigenvalues of
    rank-deficient (small-set) statistics, where it may also turn complex. With the features
    given and at most 2048 images a side, the factors are the centred features themselves.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} and {mu2.shape}")
    l1, l2 = _sqrt_factor(sigma1, features1), _sqrt_factor(sigma2, features2)
    tr_covmean = np.linalg.svd(l1.T @ l2, compute_uv=False).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    if not np.isfinite(value):
        raise FIDError("the statistics are not finite")
    return value


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d, m = x.shape[1], x.shape[0]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2 * kxy.sum() / (m * m))


def kid(feats_x: np.ndarray, feats_y: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over ``subsets``) of two N x d feature arrays (see module docstring).

    Each subset draws ``m = min(subset_size, n_x, n_y)`` rows of each side without
    replacement, from a generator seeded with ``seed`` (the same numbers every run).
    """
    m = min(subset_size, len(feats_x), len(feats_y))
    if m < 2:
        raise UsageError(f"KID needs at least 2 images on each side, got {len(feats_x)} "
                         f"and {len(feats_y)}")
    x64, y64 = feats_x.astype(np.float64), feats_y.astype(np.float64)
    rng = np.random.default_rng(seed)
    values = [_mmd2_unbiased(x64[rng.choice(len(x64), m, replace=False)],
                             y64[rng.choice(len(y64), m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def small_sample_warning(count: int, what: str) -> str:
    """A warning for fewer than 2048 images (rank-deficient covariance), or ''."""
    if count >= FEATURE_DIM:
        return ""
    return (f"warning: {what} has {count} images, fewer than {FEATURE_DIM}: the covariance is "
            f"rank-deficient and FID is biased upwards; compare only runs with the same "
            f"image counts")


@dataclass(frozen=True)
class FeatureStats:
    """Inception statistics of one image set, and what they were computed with."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray
    mode: str
    weights: str  # :func:`img2img.metrics.inception_weights.weights_fingerprint`
    version: str = __version__

    @property
    def count(self) -> int:
        """Number of images."""
        return int(self.features.shape[0])

    @classmethod
    def from_features(cls, features: np.ndarray, mode: str, weights: str) -> FeatureStats:
        """Mean and covariance (float64, ``np.cov`` with n - 1) of N x 2048 features."""
        if features.ndim != 2 or features.shape[0] < 2:
            raise UsageError(f"FID needs at least 2 images, got {features.shape[0]}")
        f32 = features.astype(np.float32)  # what is kept; the moments are of exactly these
        f64 = f32.astype(np.float64)
        return cls(f64.mean(axis=0), np.cov(f64, rowvar=False), f32, mode, weights)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz`` (no pickled objects), atomically."""
        buf = io.BytesIO()
        np.savez(buf, mu=self.mu, sigma=self.sigma, features=self.features,
                 mode=np.str_(self.mode), weights_sha256=np.str_(self.weights),
                 count=np.int64(self.count), version=np.str_(self.version),
                 format=np.str_(STATS_FORMAT))
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], mode: str, weights: str) -> FeatureStats:
        """Read :meth:`save`'s file; UsageError if it is not one, or was computed with another
        mode or other weights than ``mode`` / ``weights``."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != STATS_FORMAT:
                    raise KeyError("format")
                stats = cls(z["mu"], z["sigma"], z["features"], str(z["mode"]),
                            str(z["weights_sha256"]), str(z["version"]))
                count = int(z["count"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            why = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UsageError(f"{path}: not a statistics file saved by evaluate.py --save-stats "
                             f"({why})") from None
        d = FEATURE_DIM
        if (stats.mu.shape != (d,) or stats.sigma.shape != (d, d)
                or stats.features.shape != (count, d) or count < 2):
            raise UsageError(f"{path}: damaged statistics (shapes {stats.mu.shape}, "
                             f"{stats.sigma.shape}, {stats.features.shape}, count {count})")
        if stats.mode != mode:
            raise UsageError(f"{path}: statistics of --fid-mode {stats.mode}, this run uses "
                             f"--fid-mode {mode}")
        if stats.weights != weights:
            raise UsageError(f"{path}: statistics of other Inception weights (fingerprint "
                             f"{stats.weights[:12]}..., these are {weights[:12]}...)")
        return stats



def fid_of(a: FeatureStats, b: FeatureStats) -> float:
    """FID of two statistics computed with the same mode and weights."""
    if (a.mode, a.weights) != (b.mode, b.weights):
        raise UsageError(f"statistics of different modes or weights: {a.mode} / {b.mode}")
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, a.features, b.features)
