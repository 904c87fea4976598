"""Time several models side by side: interleaved rounds (each round times every model once, beside the speed
gauge), so a slow or fast spell of the machine lands on all of them rather than on one. Each model is its bare
encoder as `AutoModel` loads it (a student's NasbertModel, the teacher's BertModel, ...), on tokenizer-shaped
inputs without padding; the median of the rounds scaled to the machine's usual speed is kept."""

from __future__ import annotations

import torch

from nasbert.common.remote_code import trust_remote_code
from nasbert.errors import UserError
from nasbert.latency.lut import Conditions
from nasbert.latency.machine import MachineCheck
from nasbert.latency.measure import SpeedGauge, at_usual_speed, model_inputs, resolve_device, resolve_dtype, time_call


def load_encoder(folder: str, trust: bool = False) -> torch.nn.Module:
    """The bare encoder of a student, a teacher or a fine-tuned folder (its task head is not timed)."""
    from transformers import AutoConfig, AutoModel

    from nasbert.registration import register_auto_classes

    register_auto_classes()  # students load through nasbert's classes, never their folder's code copy
    try:
        allowed = trust_remote_code(folder, trust, f"the model {folder}")
        config = AutoConfig.from_pretrained(folder, trust_remote_code=allowed)
        return AutoModel.from_pretrained(folder, config=config, trust_remote_code=allowed).eval()
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"could not load the model in {folder}: {str(error).splitlines()[0]}") from None


def time_side_by_side(folders: dict[str, str], conditions: Conditions, rounds: int = 3, min_run_time_s: float = 1.0,
                      gauge_reference_ms: float | None = None, trust: bool = False) -> tuple[dict[str, float], str]:
    """Median ms of each model (name -> folder) under `conditions`, and the line on how steady the machine was."""
    device = resolve_device(conditions.device)
    dtype = resolve_dtype(conditions.dtype)
    models = {name: load_encoder(folder, trust).to(device, dtype) for name, folder in folders.items()}
    for name, model in models.items():
        positions = getattr(model.config, "max_position_embeddings", conditions.seq_len)
        if conditions.seq_len > positions:
            raise UserError(f"{name} takes {positions} tokens at most, fewer than --latency-seq-len "
                            f"{conditions.seq_len}")
    inputs = {name: model_inputs(model.config.vocab_size, conditions.batch_size, conditions.seq_len, device)
              for name, model in models.items()}
    machine = MachineCheck.before(conditions.threads, conditions.device, "the models side by side")
    gauge = SpeedGauge(device, dtype, conditions.threads, min_run_time_s / rounds)
    names = list(models)
    timed = at_usual_speed(names, lambda name: time_call(lambda: models[name](**inputs[name]), conditions.threads,
                                                         min_run_time_s / rounds),
                           rounds, gauge, gauge_reference_ms, desc="timing side by side", unit="model",
                           machine=machine)
    machine.require_steady(timed, "the models side by side")
    return {name: entry.median_ms for name, entry in zip(names, timed.entries)}, timed.note()
