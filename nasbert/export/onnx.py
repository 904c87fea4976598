"""ONNX export of a student, and a parity check of the exported graph against PyTorch with onnxruntime.

    from nasbert.export.onnx import check_onnx_parity, export_onnx
    require_onnx()                                      # before any work: one sentence if onnx is missing
    path = export_onnx(model, "student.onnx")           # any Nasbert* model (bare encoder or a head), or a
    max_abs_diff = check_onnx_parity(model, path)       # transformers encoder; RuntimeError above 1e-4

The graph takes input_ids, attention_mask and token_type_ids, int64 (B, T), with dynamic batch and sequence
axes, and returns the model's output tensors under their transformers names (last_hidden_state and
pooler_output, logits, start_logits and end_logits); losses and hidden states are left out. An input the
arch never reads is pruned by the exporter (an arch with no M or S op has no attention_mask input), and so
is one the model's forward does not take (DistilBERT has no token types).

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`). It traces one forward pass, so
the model's Python branch on `attention_mask.all()` (which skips masking on unpadded batches) is fixed at
export time; the example batch always holds a padded row, so the masked path is the one recorded, and it is
exact for unpadded batches too. The dynamo exporter (torch.export) refuses that data-dependent branch.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasbert.errors import UserError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
PARITY_ATOL = 1e-4
_EXPORT_BATCH_SIZE = 2  # row 0 full, row 1 padded; > 1 so the tracer keeps the batch axis symbolic
_SKIPPED_OUTPUTS = ("loss", "hidden_states", "attentions")


class _OnnxWrapper(nn.Module):
    """The model with a fixed positional signature and a plain tuple of output tensors, as the tracer needs."""

    def __init__(self, model: nn.Module, output_names: list[str]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids, attention_mask, token_type_ids):
        given = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        out = self.model(**accepted_inputs(self.model, given), return_dict=True)
        return tuple(out[name] for name in self.output_names)


def accepted_inputs(model: nn.Module, inputs: dict) -> dict:
    """The inputs `model.forward` takes (a model without token types has no token_type_ids parameter)."""
    parameters = inspect.signature(model.forward).parameters
    return {name: value for name, value in inputs.items() if name in parameters}


def _require(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"ONNX export needs the {module_name.split('.')[0]} package, which is not installed: "
                        "pip install nasbert[onnx]") from error


def require_onnx(int8: bool = False) -> None:
    """Refuse, in one sentence and before any work, an ONNX export (or INT8 quantization) this install cannot do."""
    for name in ("onnx", "onnxruntime") + (("onnxruntime.quantization",) if int8 else ()):
        _require(name)


def _check_shape(model: nn.Module, batch_size: int, seq_len: int) -> None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "max_position_embeddings"):
        raise UserError(f"expected a NAS-BERT student (a transformers model with a config), got {type(model).__name__}")
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    if not 2 <= seq_len <= config.max_position_embeddings:
        raise UserError(f"seq_len must be between 2 and the model's max_position_embeddings "
                        f"({config.max_position_embeddings}), got {seq_len}")


def padded_inputs(config, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random int64 inputs (B, T) where row 0 is full length and every other row is shorter (pad id, mask 0).

    A batch of one is a single padded row, so every batch has padding.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq_len, size=batch_size)  # < seq_len: padded
    if batch_size > 1:
        lengths[0] = seq_len
    positions = np.arange(seq_len)[None, :]
    attention_mask = (positions < lengths[:, None]).astype(np.int64)  # (B, T)
    input_ids = rng.integers(0, config.vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    input_ids = np.where(attention_mask == 1, input_ids, config.pad_token_id or 0)
    types = max(1, getattr(config, "type_vocab_size", 1))  # 0: a student without token types ignores them
    token_type_ids = rng.integers(0, types, size=(batch_size, seq_len), dtype=np.int64)
    token_type_ids = token_type_ids * attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def _to_torch(inputs: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(inputs[name]).to(device) for name in INPUT_NAMES)


def _model_outputs(model: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The model's output tensors by name, losses and hidden states left out."""
    device = next(model.parameters()).device
    given = dict(zip(INPUT_NAMES, _to_torch(inputs, device)))
    with torch.no_grad():
        out = model(**accepted_inputs(model, given), return_dict=True)
    return {name: value for name, value in out.items()
            if isinstance(value, torch.Tensor) and name not in _SKIPPED_OUTPUTS}


def _output_axes(model: nn.Module, seq_len: int) -> dict[str, dict[int, str]]:
    """Dynamic axes of each output, found by running two sequence lengths: axis 0 is batch, an axis whose size
    follows T is sequence (so a classifier's num_labels is never mistaken for one)."""
    short = _model_outputs(model, padded_inputs(model.config, _EXPORT_BATCH_SIZE, seq_len - 1))
    full = _model_outputs(model, padded_inputs(model.config, _EXPORT_BATCH_SIZE, seq_len))
    axes = {}
    for name, value in full.items():
        axes[name] = {0: "batch"}
        for dim in range(1, value.ndim):
            if value.shape[dim] != short[name].shape[dim]:
                axes[name][dim] = "sequence"
    return axes


def export_onnx(model: nn.Module, output_path: str | Path, seq_len: int = 128, opset: int | None = None) -> Path:
    """Write `model` (in eval mode) as an ONNX graph with dynamic batch and sequence axes; returns the path.

    `seq_len` is the length of the example batch that is traced (at most max_position_embeddings); the graph
    runs at any length up to max_position_embeddings. `opset` None takes the exporter's default (20 in torch 2.13).
    """
    _check_shape(model, _EXPORT_BATCH_SIZE, seq_len)
    onnx = _require("onnx")
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        output_axes = _output_axes(model, seq_len)
        wrapper = _OnnxWrapper(model, list(output_axes)).eval()
        device = next(model.parameters()).device
        example = _to_torch(padded_inputs(model.config, _EXPORT_BATCH_SIZE, seq_len), device)
        dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | output_axes
        with warnings.catch_warnings():
            # Expected: the tracer fixes `bool(attention_mask.all())` at the padded example (see module docstring)
            # and eager attention's `math.sqrt(head_dim)`, a constant; torch announces this exporter is the legacy one.
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python (boolean|float)",
                                    category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
            # transformers' masks index with aranges (never negative), which the exporter warns about in general.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing",
                                    category=UserWarning)
            torch.onnx.export(wrapper, example, str(output_path), input_names=list(INPUT_NAMES),
                              output_names=list(output_axes), dynamic_axes=dynamic_axes, opset_version=opset,
                              dynamo=False)
    finally:
        model.train(was_training)
    onnx.checker.check_model(str(output_path))
    return output_path


def check_onnx_parity(model: nn.Module, onnx_path: str | Path, batch_size: int = 2, seq_len: int = 37, seed: int = 0,
                      atol: float = PARITY_ATOL) -> float:
    """Max abs difference between onnxruntime (CPU) and PyTorch over every output, on a random padded batch.

    The default `seq_len` differs from export_onnx's so that the dynamic sequence axis is exercised. Padded
    positions are compared too. Raises RuntimeError when the difference is above `atol`.
    """
    _check_shape(model, batch_size, seq_len)
    ort = _require("onnxruntime")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"no ONNX file at {onnx_path}: export it first with export_onnx")
    inputs = padded_inputs(model.config, batch_size, seq_len, seed)
    was_training = model.training
    model.eval()
    try:
        expected = _model_outputs(model, inputs)
    finally:
        model.train(was_training)

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    graph_inputs = [node.name for node in session.get_inputs()]
    graph_outputs = [node.name for node in session.get_outputs()]
    if set(graph_outputs) != set(expected):
        raise UserError(f"{onnx_path} has outputs {graph_outputs} but {type(model).__name__} gives "
                        f"{list(expected)}: was it exported from another model?")
    actual = session.run(graph_outputs, {name: inputs[name] for name in graph_inputs})

    diffs = {name: float(np.abs(value - expected[name].float().cpu().numpy()).max())
             for name, value in zip(graph_outputs, actual)}
    max_abs_diff = max(diffs.values())
    if not max_abs_diff <= atol:  # `not <=` also catches NaN
        detail = ", ".join(f"{name} {diff:.3g}" for name, diff in diffs.items())
        raise RuntimeError(f"ONNX parity failed for {onnx_path}: max abs difference {max_abs_diff:.3g} > {atol:g} "
                           f"({detail}; batch {batch_size}, seq_len {seq_len}, seed {seed})")
    return max_abs_diff
