"""The shared paired-data layer: loading, checks, transforms, splits, batches, simulation."""

from mmint.data.datamodule import PairedDataModule
from mmint.data.modality import DEFAULT_TRANSFORM, TRANSFORMS, FittedTransform
from mmint.data.paired import Modality, PairedData
from mmint.data.registry import dataset_config, dataset_names, load_dataset
from mmint.data.spec import KINDS, DataSpec
from mmint.data.splits import make_split

__all__ = [
    "DEFAULT_TRANSFORM",
    "KINDS",
    "TRANSFORMS",
    "DataSpec",
    "FittedTransform",
    "Modality",
    "PairedData",
    "PairedDataModule",
    "dataset_config",
    "dataset_names",
    "load_dataset",
    "make_split",
]
