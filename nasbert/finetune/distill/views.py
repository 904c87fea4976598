"""What a model's "layers" are for distillation, and its features for the task losses.

A NAS-BERT student's layers are its blocks (a block may hold convolutions, so layers map by block boundary):
layer s is block s's output, the last block's through the output projection (the model's final, teacher-wide
state). Any other model is read through the teacher-family adaptor of `nasbert.common.teacher` (one per
`model_type`): layer s is encoder layer s's output. Attention scores Q K^T / sqrt(d) are recomputed from the
query and key projections' outputs, caught by forward hooks while a distillation forward runs: a NAS-BERT block
contributes its *last* attention layer (none if it has no M layer), a BERT layer its self-attention.

    view = ModelView(model, "student")
    features, outputs = view.features(model, inputs, needs={"states", "attention"}, layers=[0, 1])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from nasbert.common.teacher import teacher_family

NASBERT_MODEL_TYPE = "nasbert_student"


class ModelView:
    """A model's layers, the hidden_states index of each, its attention projections and its parameter units."""

    def __init__(self, model: nn.Module, role: str, name: str = ""):
        self.role = role
        config, base = model.config, model.base_model
        self.config = config
        if getattr(config, "model_type", None) == NASBERT_MODEL_TYPE:
            blocks = base.encoder.blocks
            n = len(blocks)
            self.state_index = [s + 1 for s in range(n - 1)] + [n + 1]  # hidden_states: emb, blocks.., final
            self.attention = {}
            for s, block in enumerate(blocks):
                attention_layers = [layer.op for layer in block.layers if getattr(layer, "family", None) == "M"]
                if attention_layers:
                    op = attention_layers[-1]
                    self.attention[s] = (op.query, op.key, op.num_heads)
            layer_modules = [[blocks[s]] for s in range(n)]
            layer_modules[-1].append(base.encoder.output_projection)
        else:
            family = teacher_family(getattr(config, "model_type", None), f"the {role} {name}".strip())
            layers = family.encoder_layers(base)
            self.state_index = [s + 1 for s in range(len(layers))]
            heads = config.num_attention_heads
            self.attention = {}
            for s, layer in enumerate(layers):
                parts = family.layer(layer)
                self.attention[s] = (parts.query, parts.key, heads)
            layer_modules = [[layer] for layer in layers]
        self.num_layers = len(self.state_index)
        self._layer_modules = layer_modules
        self._embeddings = base.embeddings
        self._captured: dict[int, dict[str, torch.Tensor]] = {}
        self._capturing: set[int] = set()
        self._hooks = []
        self._inputs = set(inspect.signature(model.forward).parameters)

    # ---- attention scores by hooks ---------------------------------------------------------------------------

    def watch_attention(self, layers: Collection[int]) -> None:
        """Hook the query/key projections of these layers (once); their scores come with `features`."""
        for s in layers:
            if s in self.attention and not any(s == w for w, _ in self._hooks):
                query, key, _ = self.attention[s]
                self._hooks.append((s, query.register_forward_hook(self._catch(s, "q"))))
                self._hooks.append((s, key.register_forward_hook(self._catch(s, "k"))))

    def _catch(self, s: int, which: str):
        def hook(module, args, output):
            if s in self._capturing:
                self._captured.setdefault(s, {})[which] = output
        return hook

    def release(self) -> None:
        """Remove the hooks."""
        for _, handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def scores(self, s: int) -> torch.Tensor:
        q, k = self._captured[s]["q"], self._captured[s]["k"]  # (B, T, D)
        heads = self.attention[s][2]
        batch, seq_len, width = q.shape
        d = width // heads
        q = q.view(batch, seq_len, heads, d).transpose(1, 2)  # (B, h, T, d)
        k = k.view(batch, seq_len, heads, d).transpose(1, 2)
        return q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, T, T)

    # ---- features ---------------------------------------------------------------------------------------------

    def features(self, model: nn.Module, inputs: Mapping[str, Any], needs: Collection[str],
                 layers: Collection[int] = (), attention_layers: Collection[int] = ()) -> tuple[dict, Any]:
        """Forward `model` on `inputs` (those its forward takes) and gather the features in `needs`."""
        kwargs = {k: v for k, v in inputs.items() if k in self._inputs}
        if self.role != "student":
            kwargs.pop("labels", None)
        hidden = bool({"states", "embeddings"} & set(needs))
        self._capturing = set(attention_layers) if "attention" in needs else set()
        self._captured = {}
        try:
            outputs = model(**kwargs, output_hidden_states=True) if hidden else model(**kwargs)
            features: dict[str, Any] = {}
            if "logits" in needs or "task_loss" in needs:
                features["logits"] = getattr(outputs, "logits", None)
                features["task_loss"] = getattr(outputs, "loss", None)
            if hidden:
                states = outputs.hidden_states
                features["states"] = {s: states[self.state_index[s]] for s in layers}
                features["embeddings"] = states[0]
            if "attention" in needs:
                features["attention"] = {s: self.scores(s) for s in attention_layers}
        finally:
            self._capturing, self._captured = set(), {}
        return features, outputs

    # ---- gradual unfreezing -----------------------------------------------------------------------------------

    def units(self, model: nn.Module) -> list[list[nn.Parameter]]:
        """Parameters by unit, top-down: the head (all but the encoder), layer M-1, .., layer 0, the embeddings."""
        layer_params = [[p for module in modules for p in module.parameters()] for modules in self._layer_modules]
        embedding_params = list(self._embeddings.parameters())
        inside = {id(p) for group in [*layer_params, embedding_params] for p in group}
        head = [p for p in model.parameters() if id(p) not in inside]
        return [head, *reversed(layer_params), embedding_params]
