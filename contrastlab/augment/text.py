"""Text views on the device: ConVIRT's text augmentation, one sentence of each report drawn per step.

Zhang et al. 2020 (sec. 2.2) sample a sentence uniformly from a report's sections at each step, as an image
view samples a crop. The collate tokenises every sentence of every text once (`sentence_ids`,
`sentence_mask`, and `sentence_of` (B, S): row i's sentences' rows in them, -1 past its last); the draw
happens here, on the batch's device, from torch's generator, which checkpoints restore, so a resumed run draws
what an uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_sentence(sentence_ids: Tensor, sentence_mask: Tensor, sentence_of: Tensor) -> dict[str, Tensor]:
    """`input_ids` and `attention_mask` (B, L') of one sentence per row, drawn uniformly among its sentences."""
    counts = (sentence_of >= 0).sum(dim=1).clamp(min=1)
    pick = (torch.rand(counts.shape, device=counts.device) * counts).long().clamp(max=counts - 1)
    rows = sentence_of[torch.arange(len(pick), device=pick.device), pick].clamp(min=0)
    ids, mask = sentence_ids[rows], sentence_mask[rows]
    longest = max(1, int(mask.sum(dim=1).max()))
    return {"input_ids": ids[:, :longest], "attention_mask": mask[:, :longest]}
