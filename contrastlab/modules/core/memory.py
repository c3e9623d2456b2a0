"""Memories of past embeddings: MoCo's queue of negatives and NNCLR's support set.

The contents and the write pointer are registered buffers, so they are saved in checkpoints and a
resumed run continues with the same memory. Callers enqueue keys already gathered from every rank
(`ContrastiveModule.gather`), so all ranks hold the same memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import ConfigError


class EmbeddingQueue(nn.Module):
    """A first-in first-out ring buffer of `size` L2-normalised embeddings of dimension `dim`.

    Only the slots written so far are returned, so an early step never contrasts against placeholders.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise ConfigError(f"model.init_args.queue_size must be >= 1, got {size}")
        self.size = size
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write `keys` (N, dim) over the oldest entries, wrapping around the end; no gradient is kept."""
        keys = F.normalize(keys.detach(), dim=1)[-self.size :]  # more keys than slots: the newest win
        n = keys.shape[0]
        slots = (self.pointer + torch.arange(n, device=keys.device)) % self.size
        self.embeddings[slots] = keys.to(self.embeddings.dtype)
        self.pointer.copy_((self.pointer + n) % self.size)
        self.filled.copy_((self.filled + n).clamp(max=self.size))

    def contents(self) -> Tensor:
        """A copy of the (M, dim) embeddings written so far, M <= size, in no meaningful order.

        A copy, so that enqueueing after a loss was computed from it leaves that loss's graph intact.
        """
        return self.embeddings[: int(self.filled)].clone()

    @torch.no_grad()
    def nearest(self, z: Tensor) -> Tensor:
        """For each row of z, the stored embedding of highest cosine similarity (NNCLR's NN(z, Q))."""
        memory = self.contents()
        if memory.shape[0] == 0:
            return F.normalize(z.detach(), dim=1)  # empty at the very first step: fall back on z itself
        index = (F.normalize(z, dim=1) @ memory.T).argmax(dim=1)
        return memory[index]


def check_queue_fits_data(queue_size: int, trainer) -> None:
    """A queue longer than the training set would hold stale keys of the very samples it contrasts.

    Raised from the method's `setup`, before the first step, when the data module can say its size.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "split"):
        return
    train_size = len(datamodule.split("train"))
    if queue_size > train_size:
        raise ConfigError(
            f"model.init_args.queue_size={queue_size} is larger than the {train_size} training samples of "
            f"{datamodule.info.name}: the queue would repeat samples; set it to at most {train_size}"
        )
