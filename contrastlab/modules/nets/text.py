"""Text towers for paired training: a small transformer encoder built from config, or a local Hugging Face model.

Both map a tokenised batch (`input_ids` (B, L), `attention_mask` (B, L) bool, made by the DataModule's collate)
to features (B, num_features). The vocabulary (size, padding id) comes from the data
(`DataInfo.extra["text"]`, see datamodules/text.py), never from the model's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastlab.errors import ConfigError


class TextTransformer(nn.Module):
    """Token and learned position embeddings, a pre-norm transformer encoder, and the mean of the real tokens
    (padding masked out of attention and of the mean) under a final LayerNorm.

    Args:
        vocab_size, pad_id: the tokenizer's.
        max_tokens: the longest input (positions).
        width, layers, heads, mlp_ratio, dropout: the encoder's size.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        max_tokens: int = 64,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ):
        super().__init__()
        if width % heads:
            raise ConfigError(f"model.text_tower: width {width} must be a multiple of heads {heads}")
        self.token = nn.Embedding(vocab_size, width, padding_idx=pad_id)
        self.position = nn.Parameter(torch.zeros(max_tokens, width))
        nn.init.normal_(self.position, std=0.01)
        layer = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.num_features = width

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        length = input_ids.shape[1]
        if length > self.position.shape[0]:
            raise ValueError(f"{length} tokens, but the text tower has {self.position.shape[0]} positions")
        mask = attention_mask.bool()
        h = self.token(input_ids) + self.position[:length]
        h = self.encoder(h, src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).to(h.dtype)
        return self.norm((h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1))


class HuggingFaceText(nn.Module):
    """A Hugging Face encoder (BERT, ClinicalBERT, ...) from a local folder written by `save_pretrained`; nothing
    downloads. Features: the first token's last hidden state ([CLS]), as ConVIRT and BioViL pool."""

    def __init__(self, path: str):
        super().__init__()
        import transformers

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model.text_model: no Hugging Face model in {folder} (no config.json; write it with "
                              "save_pretrained)")  # fmt: skip
        try:
            # use_kernels=False: from 5.25 transformers swaps in hub kernels by default, which need the `kernels`
            # package and a download; a local encoder runs as written
            self.model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, use_kernels=False)
        except (OSError, ValueError, ImportError) as err:
            raise ConfigError(
                f"model.text_model: transformers {transformers.__version__} cannot load {folder}: "
                f"{str(err).splitlines()[0]} (the tested versions are in requirements/hf.txt: "
                "pip install -r requirements/hf.txt)"
            ) from err
        self.num_features = self.model.config.hidden_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask.long())
        return out.last_hidden_state[:, 0]


def create_text_tower(text_info: dict[str, Any] | None, text_model: str | None, **kwargs: Any) -> nn.Module:
    """The text tower for the vocabulary `text_info` describes: a local HF model (`text_model`), else a
    `TextTransformer` with `kwargs` (model.text_tower)."""
    if not text_info:
        raise ConfigError(
            "model: a paired method needs paired data (a DataModule whose samples carry text, such as "
            "contrastlab.datamodules.paired.PairedCSV); this data has no text vocabulary"
        )
    if text_model:
        hf_path = text_info.get("hf_path")
        if hf_path is None or Path(hf_path) != Path(text_model).expanduser().resolve():
            raise ConfigError(
                f"model.text_model={text_model!r} needs its own tokenizer: set data.tokenizer to the same folder "
                f"(the data's tokenizer is {text_info.get('hf_path') or text_info.get('kind')})"
            )
        return HuggingFaceText(text_model)
    if text_info.get("kind") == "huggingface":
        raise ConfigError(
            f"data.tokenizer is the Hugging Face folder {text_info['hf_path']}: set model.text_model to it too, "
            "or train our own tokenizer (data.tokenizer: wordpiece)"
        )
    unknown = set(kwargs) - {"width", "layers", "heads", "mlp_ratio", "dropout"}
    if unknown:
        raise ConfigError(
            f"model.text_tower: unknown keys {sorted(unknown)}; use width, layers, heads, mlp_ratio, dropout"
        )
    return TextTransformer(text_info["vocab_size"], text_info["pad_id"], text_info["max_tokens"], **kwargs)
