"""MLM-style masking of the teacher's input (BERT's 80/10/10 rule), optionally by whole words.

Uses its own torch.Generator so a resumed run masks exactly as an uninterrupted one would.
"""

from __future__ import annotations

import torch


class Masker:
    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False, seed: int = 0):
        self.probability = probability
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.generator = torch.Generator().manual_seed(seed)
        self.continuation = None
        if whole_word:  # WordPiece: a token starting with '##' continues the word before it
            vocab = tokenizer.get_vocab()
            self.continuation = torch.zeros(self.vocab_size, dtype=torch.bool)
            for token, index in vocab.items():
                if token.startswith("##") and index < self.vocab_size:
                    self.continuation[index] = True

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """A masked copy of input_ids (B, T)."""
        return self.with_labels(input_ids)[0]

    def with_labels(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked copy of input_ids (B, T), MLM labels (B, T): the original id where chosen, else -100)."""
        ids = input_ids.clone()
        special = torch.isin(ids, self.special_ids)
        chosen = (torch.rand(ids.shape, generator=self.generator) < self.probability) & ~special
        if self.continuation is not None:
            # A continuation piece follows the choice of its word's first piece.
            continues = self.continuation[ids] & ~special
            for t in range(1, ids.shape[1]):
                chosen[:, t] = torch.where(continues[:, t], chosen[:, t - 1], chosen[:, t])
        action = torch.rand(ids.shape, generator=self.generator)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=self.generator)
        ids[chosen & (action < 0.8)] = self.mask_id
        swap = chosen & (action >= 0.8) & (action < 0.9)
        ids[swap] = random_ids[swap]
        return ids, torch.where(chosen, input_ids, torch.full_like(input_ids, -100))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
