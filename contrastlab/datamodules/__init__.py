"""DataModules: raw samples out (`x`, `y`, `idx`), no augmentation; workers only decode and crop."""

from contrastlab.datamodules.base import ContrastiveDataModule

__all__ = ["ContrastiveDataModule"]
