"""The data of Table V (Sec. V-A): the three regression datasets, one seed's train / held-out
split in the variant's units, and the table's metrics (MAE, MSE, R2)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from gal_suite.config import ConfigError

__all__ = ["DATASETS", "VARIANTS", "DatasetUnavailable", "Split", "load_dataset", "make_split",
           "regression_metrics"]

DATASETS = ("boston", "diabetes", "california")
VARIANTS = ("paper", "standardized")


class DatasetUnavailable(RuntimeError):
    """A dataset cannot be loaded (e.g. California housing neither cached nor downloadable)."""


# --------------------------------------------------------------------------- data
@functools.cache
def load_dataset(name: str, allow_download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` as float64 arrays for one of :data:`DATASETS` (Sec. V-A, Table V).

    California housing uses ``fetch_california_housing`` (cache in ``SCIKIT_LEARN_DATA`` or
    ``~/scikit_learn_data``; downloads there if ``allow_download`` and the machine is online).
    """
    if name == "boston":
        from mlxtend.data import boston_housing_data

        X, y = boston_housing_data()
    elif name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)  # sklearn's default (mean-centred, scaled features)
    elif name == "california":
        from sklearn.datasets import fetch_california_housing, get_data_home

        home = get_data_home()
        try:
            X, y = fetch_california_housing(return_X_y=True, download_if_missing=allow_download)
        except Exception as e:  # any failure here means "not available"
            raise DatasetUnavailable(
                f"California housing is not available: not cached in {home} "
                f"({'download failed: ' + type(e).__name__ + ': ' + str(e) if allow_download else 'download disabled by data.allow_download=false'}). "
                f"Fix: set SCIKIT_LEARN_DATA=<folder holding cal_housing_py3.pkz> "
                f"(e.g. SCIKIT_LEARN_DATA=../shared/data/scikit_learn_data), or run once on a "
                f"machine with internet so scikit-learn can download it."
            ) from None
    else:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).reshape(-1)


@dataclasses.dataclass
class Split:
    """One seed's split, in training units (standardised or not) plus the inverse transform."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test_raw: np.ndarray  # held-out target in original units (metrics)
    y_test: np.ndarray  # held-out target in training units (val_loss)
    y_mean: float = 0.0
    y_scale: float = 1.0

    def to_original(self, pred: np.ndarray) -> np.ndarray:
        return np.asarray(pred, dtype=np.float64).reshape(-1) * self.y_scale + self.y_mean


def make_split(
    X: np.ndarray, y: np.ndarray, *, test_size: float, seed: int, variant: str
) -> Split:
    """Train / held-out split (``train_test_split``, ``random_state=seed``) and the variant's
    scaling: ``paper`` leaves inputs and target unscaled; ``standardized`` fits
    ``StandardScaler`` on the training split for the features and the target."""
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed)
    if variant == "paper":
        return Split(X_tr, y_tr, X_te, y_te, y_te.copy())
    if variant == "standardized":
        mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        ym, ys = float(y_tr.mean()), float(y_tr.std()) or 1.0
        return Split((X_tr - mu) / sd, (y_tr - ym) / ys, (X_te - mu) / sd, y_te,
                     (y_te - ym) / ys, ym, ys)
    raise ConfigError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, MSE and R2 of Table V (NaN when the predictions are not finite)."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(y_pred)):
        return {"mae": float("nan"), "mse": float("nan"), "r2": float("nan")}
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mse": float(mean_squared_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }
