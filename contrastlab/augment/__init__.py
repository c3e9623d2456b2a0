"""Batched augmentations: nn.Modules that turn one raw batch into V views on the batch's device."""
