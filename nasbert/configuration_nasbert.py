"""Configuration of a NAS-BERT student. Imports only transformers: it is copied into every exported folder."""

from __future__ import annotations

try:  # transformers >= 5
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as _BaseConfig


class NasbertConfig(_BaseConfig):
    """A student of any arch of any NAS-BERT space.

    `arch` is the arch string, e.g. "256:M,F,S5,F,I,I/512:M,F,M,F,M,F": one `width:ops` per block.
    `embedding_size` is E of the factorised embeddings (vocab x E, then E -> first block width);
    `hidden_size` is the width of the encoder's output (the teacher's hidden size, so the student's last
    hidden state can be distilled against the teacher's).
    `embedding_projection` / `output_projection` = False drop the E -> w_1 and w_N -> H linears where the
    sizes already agree (a hand-designed, BERT-shaped student); students from a supernet always have them.

    The teacher's conventions (their defaults are BERT's, so every older student folder computes as before):
    `type_vocab_size` 0 = no token-type embeddings (DistilBERT, MPNet; token_type_ids are then ignored);
    `position_padding_idx` p numbers positions as RoBERTa / XLM-R / MPNet do, p+1, p+2, .. for tokens that are not
    padding and p for padding (None: 0, 1, ..); `hidden_act` and `layer_norm_eps` are the teacher's;
    `embedding_layer_norm_eps` (None: layer_norm_eps) is the embeddings' own, for a student whose layers keep
    another eps (a student extracted from a supernet keeps the supernet's).
    """

    model_type = "nasbert_student"
    # Conventions that are None by default live on the class, so a config that leaves them None writes no key
    # (config.json of a BERT teacher's student stays what it was before they existed).
    position_padding_idx = None
    embedding_layer_norm_eps = None

    def __init__(
        self,
        arch: str = "128:M,F",
        vocab_size: int = 30522,
        embedding_size: int = 128,
        hidden_size: int = 128,
        head_dim: int = 64,
        ffn_ratio: int = 4,
        hidden_act: str = "gelu",
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        classifier_dropout: float | None = None,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        embedding_projection: bool = True,
        output_projection: bool = True,
        position_padding_idx: int | None = None,
        embedding_layer_norm_eps: float | None = None,
        **kwargs,
    ):
        # Own attributes first: transformers 5 validates in super().__init__.
        self.arch = arch
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.head_dim = head_dim
        self.ffn_ratio = ffn_ratio
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.classifier_dropout = classifier_dropout
        self.initializer_range = initializer_range
        self.embedding_projection = embedding_projection
        self.output_projection = output_projection
        if position_padding_idx is not None:
            self.position_padding_idx = position_padding_idx
        if embedding_layer_norm_eps is not None:
            self.embedding_layer_norm_eps = embedding_layer_norm_eps
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)

    @property
    def blocks(self) -> list[tuple[int, list[str]]]:
        """The arch as [(width, [op, ...]), ...] with identities dropped."""
        blocks = []
        for text in self.arch.split("/"):
            width, _, ops = text.partition(":")
            blocks.append((int(width), [op for op in ops.split(",") if op != "I"]))
        return blocks

    @property
    def num_hidden_layers(self) -> int:
        return sum(len(ops) for _, ops in self.blocks)
