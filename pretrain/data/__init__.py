"""Data of the suite, for pretraining and the robustness report alike: image folders and tars with
bad-image counting (:mod:`.folders`), timm's transforms (:mod:`.transforms`), the GPU decode and
augmentation path (:mod:`.gpu`) and the one loader factory that chooses between the two
(:mod:`.loader`)."""
from .folders import (EXPECTED_LAYOUT, BadImageCounter, DataLayoutError, FactoryDataset, RobustImageDataset, ShardSampler,
                      empty_class_folders, split_location)
from .loader import PIPELINES, choose_pipeline, create_loader, reserve_hardware_queues, set_epoch
from .synthetic import SyntheticBatches
from .transforms import build_transforms

__all__ = ["EXPECTED_LAYOUT", "PIPELINES", "BadImageCounter", "DataLayoutError", "FactoryDataset", "RobustImageDataset",
           "ShardSampler", "SyntheticBatches", "build_transforms", "choose_pipeline", "create_loader",
           "empty_class_folders", "reserve_hardware_queues", "set_epoch", "split_location"]
