"""MLM-style masking of the teacher's input (BERT's 80/10/10 rule), optionally by whole words.

The mask token is the tokenizer's own (`[MASK]`, `<mask>`, ...); special tokens (`tokenizer.all_special_ids`:
`[CLS]`/`<s>`, separators, padding, ...) are never chosen. Whole-word masking reads word boundaries from the
vocabulary: WordPiece marks a continuation with a prefix ('##'); SentencePiece ('▁') and byte-level BPE ('Ġ')
mark the start of a word instead, so there a piece continues the word before it unless it starts with the marker
or follows a special token. A vocabulary with neither kind of marker is refused in one sentence.

Uses its own torch.Generator so a resumed run masks exactly as an uninterrupted one would.
"""

from __future__ import annotations

import torch

from nasbert.errors import UserError

WORD_START_MARKERS = ("▁", "Ġ")  # SentencePiece, byte-level BPE


class Masker:
    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False, seed: int = 0):
        self.probability = probability
        self.mask_id = tokenizer.mask_token_id
        if self.mask_id is None:
            raise UserError(f"the tokenizer {type(tokenizer).__name__} has no mask token; MLM masking needs one")
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.generator = torch.Generator().manual_seed(seed)
        self.continuation = None
        self.marks_word_starts = False
        if whole_word:
            self.continuation, self.marks_word_starts = continuation_pieces(tokenizer, self.vocab_size)

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
            if self.marks_word_starts:  # the first piece after <s> carries no marker but starts a word
                continues[:, 1:] &= ~special[:, :-1]
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


def continuation_pieces(tokenizer, vocab_size: int) -> tuple[torch.Tensor, bool]:
    """(which ids (V,) continue the word before them, whether the vocabulary marks word starts rather than
    continuations), from WordPiece's continuation prefix or a SentencePiece / byte-level BPE word-start marker."""
    vocab = tokenizer.get_vocab()
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None) or None  # byte-level BPE sets it to ""
    if prefix is None and (type(model).__name__ == "WordPiece" or (model is None and any(
            token.startswith("##") for token in vocab))):
        prefix = "##"
    starts = {marker: sum(token.startswith(marker) for token in vocab) for marker in WORD_START_MARKERS}
    marker = max(starts, key=starts.get)
    if prefix is None and not starts[marker]:
        raise UserError(f"whole-word masking needs word boundaries in the vocabulary (WordPiece '##', SentencePiece "
                        f"'▁' or byte-level BPE 'Ġ'), and the tokenizer {type(tokenizer).__name__} has none; "
                        "turn whole-word masking off")
    continuation = torch.zeros(vocab_size, dtype=torch.bool)
    for token, index in vocab.items():
        if index < vocab_size:
            continuation[index] = token.startswith(prefix) if prefix is not None else not token.startswith(marker)
    return continuation, prefix is None
