"""Text for paired data: a tokenizer trained on the training reports, or a Hugging Face one from a local folder.

Tokenisation happens in the DataModule's collate (in loader workers), never on the device: a batch carries
`input_ids` (B, L) int64 and `attention_mask` (B, L) bool, padded to its longest text and cut at `max_tokens`.

A trained tokenizer (`tokenizers`' WordPiece or BPE) is cached as one JSON file beside the data (or in
`tokenizer_dir`) whose name holds a digest of the training texts and the settings, so a resumed run, a
`contrastlab eval` and a second run on the same data read the same vocabulary instead of training another.
What the text tower must know (vocabulary size, padding id, the file's SHA-256) goes into the data's
`DataInfo.extra["text"]`, so a checkpoint records which vocabulary its embeddings index.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from contrastlab.errors import ConfigError, DataError

KINDS = ("wordpiece", "bpe")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # [PAD] first: padding id 0


def _digest(texts: Iterable[str], settings: str) -> str:
    h = hashlib.sha256(settings.encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _train(texts: list[str], kind: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False)
        tok.decoder = decoders.WordPiece()
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False)
        tok.decoder = decoders.BPEDecoder()
    # BERT's normaliser (lower case, accents stripped) and pre-tokeniser (whitespace and punctuation)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class TextTokenizer:
    """Texts -> `input_ids`, `attention_mask`; picklable, so loader workers carry it.

    Build it with `TextTokenizer.trained(...)` (our own vocabulary, cached) or `TextTokenizer.from_pretrained(path)`.
    """

    def __init__(self, backend: Any, max_tokens: int, info: dict[str, Any], hf: bool = False):
        self.backend, self.max_tokens, self.info, self.hf = backend, max_tokens, info, hf

    @classmethod
    def trained(cls, texts: list[str], kind: str, vocab_size: int, max_tokens: int, cache_dir: Path) -> TextTokenizer:
        """Our own vocabulary of the training `texts`: read from `cache_dir` when trained before, else trained
        and written there."""
        if kind not in KINDS:
            raise ConfigError(
                f"data.tokenizer must be one of {', '.join(KINDS)} or a local Hugging Face folder, got {kind!r}"
            )
        if vocab_size < len(SPECIAL) + 1:
            raise ConfigError(f"data.vocab_size must be > {len(SPECIAL)}, got {vocab_size}")
        from tokenizers import Tokenizer

        path = Path(cache_dir) / f"tokenizer-{kind}-{vocab_size}-{_digest(texts, f'{kind}:{vocab_size}')}.json"
        if path.is_file():
            backend = Tokenizer.from_file(str(path))
        else:
            if not texts:
                raise DataError("data: the training split holds no text to train a tokenizer on")
            backend = _train(texts, kind, vocab_size)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per process: DDP ranks may train at once
                backend.save(str(tmp))
                tmp.replace(path)  # atomic: two processes starting together never read half a file
            except OSError as err:
                raise DataError(
                    f"data.tokenizer_dir: cannot write the tokenizer to {path.parent} ({err}); "
                    "set data.tokenizer_dir to a writable folder"
                ) from err
        info = {
            "kind": kind,
            "tokenizer": str(path),
            "sha256": file_sha256(path),
            "vocab_size": backend.get_vocab_size(),
            "pad_id": backend.token_to_id("[PAD]"),
            "max_tokens": max_tokens,
        }
        return cls(backend, max_tokens, info)

    @classmethod
    def from_pretrained(cls, path: str, max_tokens: int) -> TextTokenizer:
        """A Hugging Face tokenizer saved in a local folder (`save_pretrained`); nothing downloads."""
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"data.tokenizer: {folder} is not a folder; give wordpiece, bpe or a local Hugging Face model folder"
            )
        from transformers import AutoTokenizer

        try:
            backend = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as err:
            raise DataError(
                f"data.tokenizer: no Hugging Face tokenizer in {folder} ({str(err).splitlines()[0]})"
            ) from err
        info = {
            "kind": "huggingface",
            "hf_path": str(folder.resolve()),
            "vocab_size": len(backend),
            "pad_id": backend.pad_token_id or 0,
            "max_tokens": max_tokens,
        }
        return cls(backend, max_tokens, info, hf=True)

    def __call__(self, texts: list[str]) -> dict[str, Tensor]:
        if self.hf:
            out = self.backend(
                list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            return {"input_ids": out["input_ids"].long(), "attention_mask": out["attention_mask"].bool()}
        encodings = self.backend.encode_batch(list(texts))
        ids = [e.ids[: self.max_tokens] for e in encodings]
        if any(len(e.ids) > self.max_tokens for e in encodings):  # keep [SEP] last after a cut
            sep = self.backend.token_to_id("[SEP]")
            ids = [i if i[-1] == sep else i[:-1] + [sep] for i in ids]
        longest = max(1, max(len(i) for i in ids))
        input_ids = torch.full((len(ids), longest), self.info["pad_id"], dtype=torch.long)
        for row, i in enumerate(ids):
            input_ids[row, : len(i)] = torch.tensor(i, dtype=torch.long)
        mask = torch.arange(longest)[None, :] < torch.tensor([len(i) for i in ids])[:, None]
        return {"input_ids": input_ids, "attention_mask": mask}
