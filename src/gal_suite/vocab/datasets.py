"""The datasets of the paper (Sec. V: CIFAR-10/100, ImageNet, MS COCO 2017 and Table V's
regression sets) and the stand-ins the suite runs in their place, one entry each: the name
tables show, the paper dataset a stand-in replaces and the loader that reads it. A config's
``datasets:`` entry holds the data's location and its run settings; its ``label`` is the record's
description of the data actually used (``dataset_label``)."""

from __future__ import annotations

from dataclasses import dataclass

from gal.registry import Registry

__all__ = ["DATASETS", "DATASET_LABELS", "LOADERS", "DatasetEntry", "datasets_of", "with_stand_ins"]

#: loader key -> the module that reads such a dataset
LOADERS: dict[str, str] = {
    "image": "experiments.image_data (data.format: cifar10 | cifar100 | imagefolder)",
    "regression": "experiments.regression_data (scikit-learn loaders)",
    "coco": "detr_gal.coco_data (COCO json + images)",
}


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: ``label`` its name in tables; ``stands_in_for`` the paper dataset it
    replaces (None: the paper's own, or test data); ``loader`` a key of :data:`LOADERS`."""

    label: str
    loader: str
    stands_in_for: str | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset", "gal_suite.vocab.datasets.DATASETS", {
    "cifar10": DatasetEntry("CIFAR-10", "image"),
    "cifar100": DatasetEntry("CIFAR-100", "image"),
    "imagenet": DatasetEntry("ImageNet", "image"),
    "cifar10_jpeg": DatasetEntry("CIFAR-10 (JPEG q75 copy)", "image", "cifar10"),
    "tiny100_32": DatasetEntry("Tiny-ImageNet-100 at 32 px", "image", "cifar100"),
    "tiny100_64": DatasetEntry("Tiny-ImageNet-100 (64 px)", "image", "imagenet"),
    "smoke": DatasetEntry("generated smoke data", "image"),
    "boston": DatasetEntry("Boston housing", "regression"),
    "diabetes": DatasetEntry("Diabetes", "regression"),
    "california": DatasetEntry("California housing", "regression"),
    "coco": DatasetEntry("MS COCO 2017", "coco"),
    "coco_tiny": DatasetEntry("COCO-tiny (80 + 80 real COCO 2017 images)", "coco", "coco"),
    "shapes": DatasetEntry("Synthetic shapes (COCO format, generated)", "coco", "coco"),
})
DATASET_LABELS = {k: v.label for k, v in DATASETS.items()}


def with_stand_ins(paper: str) -> tuple[str, ...]:
    """``paper`` (a paper dataset's key) followed by the keys of its stand-ins, in registry
    order: the order a table lists them in."""
    DATASETS[paper]  # an unknown key: one clear error
    return (paper, *(k for k, e in DATASETS.items() if e.stands_in_for == paper))


def datasets_of(loader: str) -> tuple[str, ...]:
    """The keys of the datasets read by ``loader`` (Table V's: ``regression``), in order."""
    if loader not in LOADERS:
        raise ValueError(f"unknown loader {loader!r}; choose one of {', '.join(LOADERS)}")
    return tuple(k for k, e in DATASETS.items() if e.loader == loader)
