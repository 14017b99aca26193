"""The book's chapter-2 PyTorch code: the reference flax-embed is compared with.

Written for this project from the book's description (chapter 2, and the
``GPTModel`` of chapter 4 for the attribute names); it imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tiktoken
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["GPTDatasetV1", "TorchInputEmbedding", "create_dataloader_v1", "torch_embed"]


class GPTDatasetV1(Dataset):
    """The book's sliding-window dataset: every window stored as its own tensor."""

    def __init__(self, txt: str, tokenizer: tiktoken.Encoding, max_length: int, stride: int):
        self.input_ids = []
        self.target_ids = []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        assert len(token_ids) > max_length, (
            "Number of tokenized inputs must at least be equal to max_length+1"
        )
        for i in range(0, len(token_ids) - max_length, stride):
            input_chunk = token_ids[i : i + max_length]
            target_chunk = token_ids[i + 1 : i + max_length + 1]
            self.input_ids.append(torch.tensor(input_chunk))
            self.target_ids.append(torch.tensor(target_chunk))

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(
    txt: str,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    tokenizer: tiktoken.Encoding | None = None,
) -> DataLoader:
    """The book's loader: GPT-2 BPE, ``GPTDatasetV1``, torch ``DataLoader``."""
    if tokenizer is None:
        tokenizer = tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
    )


class TorchInputEmbedding(torch.nn.Module):
    """The seed's two ``torch.nn.Embedding`` layers, named as in the book's GPTModel.

    ``forward(in_idx)`` returns ``tok_emb(in_idx) + pos_emb(arange(T))``, shape
    ``(B, T, emb_dim)``; ``positions`` overrides the ``arange``.
    """

    def __init__(self, vocab_size: int = 50257, context_length: int = 1024, emb_dim: int = 256):
        super().__init__()
        self.tok_emb = torch.nn.Embedding(vocab_size, emb_dim)
        self.pos_emb = torch.nn.Embedding(context_length, emb_dim)

    def forward(self, in_idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        seq_len = in_idx.shape[-1]
        if positions is None:
            positions = torch.arange(seq_len, device=in_idx.device)
        return self.tok_emb(in_idx) + self.pos_emb(positions)

    def run(self, ids: Any, positions: Any = None) -> torch.Tensor:
        """``forward`` on NumPy (or any array-like) ids, widened to int64, on the module's device.

        The one way the parity suite runs torch on NumPy ids: under ``no_grad``.
        """
        device = self.tok_emb.weight.device
        ids_t = torch.from_numpy(np.asarray(ids)).long().to(device)
        pos_t = None if positions is None else torch.from_numpy(np.asarray(positions))
        with torch.no_grad():
            return self(ids_t, None if pos_t is None else pos_t.long().to(device))


def torch_embed(params: Any, ids_BxT: Any) -> np.ndarray:
    """The book's PyTorch module loaded with Flax ``params``, run on ``ids_BxT``: ``(B, T, D)``."""
    from flax_embed.convert import params_to_torch

    state = params_to_torch(params)
    (vocab_size, emb_dim), context_length = (
        state["tok_emb.weight"].shape,
        state["pos_emb.weight"].shape[0],
    )
    module = TorchInputEmbedding(vocab_size, context_length, emb_dim)
    module.load_state_dict(state)
    return module.run(ids_BxT).numpy()
