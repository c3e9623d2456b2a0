"""Preloaded into a warm server, this module makes torch report CUDA as initialised, as a module that touched the
GPU at import would: the server must not fork after it."""

import torch

torch.cuda.is_initialized = lambda: True
