"""Training the Invertible Mask Network: a callable API the ``imnkit train`` command wraps."""

from imnkit.train.checkpoint import (
    Checkpoint,
    average_weights,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_weights,
)
from imnkit.train.data import (
    CropSampler,
    PairSource,
    RealisticPairs,
    UnrelatedPairs,
    load_images,
    make_pair_source,
)
from imnkit.train.loop import (
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    TrainProgress,
    default_checkpoint_dir,
    train,
)
from imnkit.train.losses import LossWeights, quantize_ste, rgb_psnr, y_psnr

__all__ = [
    "Checkpoint",
    "CropSampler",
    "LossWeights",
    "PairSource",
    "RealisticPairs",
    "TrainConfig",
    "TrainProgress",
    "Trainer",
    "TrainingDivergedError",
    "UnrelatedPairs",
    "average_weights",
    "default_checkpoint_dir",
    "latest_checkpoint",
    "load_checkpoint",
    "load_images",
    "load_weights",
    "make_pair_source",
    "quantize_ste",
    "rgb_psnr",
    "save_weights",
    "train",
    "y_psnr",
]
