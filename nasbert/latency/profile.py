"""`nasbert latency profile`: time every module a student of the space can contain, on this device, in a runtime.

Entries are the standalone student's own modules (nasbert.modeling_nasbert), each fed what it gets in a
real forward pass at batch B and seq len T:

    embeddings          NasbertEmbeddings     input_ids (B, T)    -> (B, T, E)
    layer (op, w)       NasbertLayer           (B, T, w)           -> (B, T, w)     op + residual + LayerNorm
    projection i->o     nn.Linear(i, o)        (B, T, i)           -> (B, T, o)     E->w, w->w', w->H
    heads               pooler (B, T, H) -> (B, H); mlm (B, T, H) -> (B, T, vocab);
                        classifier (B, H) -> (B, 2); token_classifier and qa (B, T, H) -> (B, T, 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from nasbert.errors import UserError
from nasbert.latency.lut import HEADS, Conditions, Entry, LatencyTable
from nasbert.latency.machine import MachineCheck
from nasbert.latency.measure import SpeedGauge, at_usual_speed, fixed_threads, resolve_device, resolve_dtype, time_call
from nasbert.latency.runtimes import get_runtime
from nasbert.modeling_nasbert import NasbertEmbeddings, NasbertLayer, NasbertLMHead, NasbertPooler
from nasbert.student import student_config
from search_space import SearchSpace

# A task: (table name, build the module, build its input) -> timed as module(input)
Task = tuple[str, Callable[[], nn.Module], Callable[[], tuple]]


def profile_tasks(space: SearchSpace, batch_size: int, seq_len: int, device: torch.device, dtype: torch.dtype,
                  heads: tuple[str, ...] = HEADS) -> list[Task]:
    """Every entry of the space's table, as a module factory and an input factory."""
    config = student_config(space, space.largest_arch())
    e, h = space.embedding_dim, space.hidden_size

    def hidden(width: int) -> Callable[[], tuple]:
        return lambda: (torch.randn(batch_size, seq_len, width, device=device, dtype=dtype),)  # (B, T, w)

    def ids() -> tuple:
        return (torch.randint(1, space.vocab_size, (batch_size, seq_len), device=device),)  # (B, T)

    tasks: list[Task] = [("embeddings", lambda: NasbertEmbeddings(config), ids)]
    for op in space.ops:
        for w in space.widths:
            tasks.append((f"layer/{op}/{w}", lambda op=op, w=w: _Layer(NasbertLayer(config, op, w)), hidden(w)))
    pairs = [(e, w) for w in space.widths] + [(a, b) for a in space.widths for b in space.widths]
    pairs += [(w, h) for w in space.widths]
    for i, o in dict.fromkeys(pairs):  # unique, in order (E or H may equal a width)
        tasks.append((f"projection/{i}->{o}", lambda i=i, o=o: nn.Linear(i, o), hidden(i)))
    head_modules: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple]]] = {
        "pooler": (lambda: NasbertPooler(config), hidden(h)),
        "mlm": (lambda: NasbertLMHead(config), hidden(h)),
        "classifier": (lambda: nn.Linear(h, 2), lambda: (torch.randn(batch_size, h, device=device, dtype=dtype),)),
        "token_classifier": (lambda: nn.Linear(h, 2), hidden(h)),
        "qa": (lambda: nn.Linear(h, 2), hidden(h)),
    }
    for head in heads:
        if head not in head_modules:
            raise UserError(f"unknown head {head!r}; known heads are {', '.join(head_modules)}")
        tasks.append((f"head/{head}", *head_modules[head]))
    return tasks


class _Layer(nn.Module):
    """A NasbertLayer called as the encoder calls it without padding (no masks)."""

    def __init__(self, layer: NasbertLayer):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x, None, None)


class _Passthrough(nn.Module):
    """Nothing but the call: what a runtime spends on a call whatever the module (its fixed cost)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


CALL = "call"  # the task that times a runtime's fixed cost per call
MIN_NET_SHARE = 0.1  # a module never counts for less than this share of its timed call


def net_of_call(entry: Entry, call_ms: float) -> Entry:
    """A module's entry without the runtime's fixed cost per call (which a whole model pays once)."""
    return Entry(max(entry.median_ms - call_ms, MIN_NET_SHARE * entry.median_ms), entry.iqr_ms, entry.runs_count)


def profile_space(space: SearchSpace, device: str = "cpu", threads: int | None = None, batch_size: int = 1,
                  seq_len: int = 128, dtype: str | None = None, min_run_time_s: float = 0.9, rounds: int = 3,
                  heads: tuple[str, ...] = HEADS, progress: bool = True, runtime: str = "torch",
                  precision: str | None = None) -> LatencyTable:
    """Measure every entry of `space`'s table under these conditions and return the table (unsaved).

    Entries are timed in `runtime` at `precision` (default: that of `dtype`, float32 if neither is given): in
    onnxruntime every module is exported (and for int8 quantized) once, then timed like a torch module. Where
    the runtime runs a whole model in one call (onnxruntime), the fixed cost of a call (a graph that returns its
    input, fed a (B, T, H) hidden state; `profile.call_overhead_ms`) is taken off every entry but the
    embeddings', so a student's sum counts it once, as its one call does.

    Each entry gets `rounds` timings of `min_run_time_s / rounds` seconds scaled to the machine's usual speed,
    in passes over all entries (see `at_usual_speed`); the median is kept. The gauge's usual reading is stored
    (`profile.gauge_reference_ms`) so that later timings are scaled to the same speed. A busy
    machine is refused (MachineBusyError, see `nasbert.latency.machine`) before and after timing.
    """
    if batch_size < 1 or seq_len < 1 or rounds < 1:
        raise UserError(f"batch size, seq len and rounds must be positive, got {batch_size}, {seq_len}, {rounds}")
    if seq_len > space.max_position_embeddings:
        raise UserError(f"seq len {seq_len} is longer than the space's max_position_embeddings "
                        f"{space.max_position_embeddings}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    conditions = Conditions.current(device, threads, batch_size, seq_len, dtype, runtime, precision)
    torch_device = resolve_device(device)
    torch_dtype, timer = resolve_dtype(conditions.dtype), get_runtime(runtime)
    machine = MachineCheck.before(conditions.threads, device, "a latency table")
    start = time.perf_counter()
    with fixed_threads(conditions.threads):
        torch.manual_seed(0)
        tasks = profile_tasks(space, batch_size, seq_len, torch_device, torch_dtype, heads)
        if timer.one_call_per_model:
            hidden = (torch.randn(batch_size, seq_len, space.hidden_size, device=torch_device, dtype=torch_dtype),)
            tasks.append((CALL, _Passthrough, lambda: hidden))
        calls = {name: timer.prepare(make_module().eval().to(device=torch_device, dtype=torch_dtype), make_input(),
                                     conditions.precision, conditions.threads)
                 for name, make_module, make_input in tqdm(tasks, desc=f"exporting to {runtime}", unit="entry",
                                                           disable=not progress or runtime == "torch")}
        gauge = SpeedGauge(torch_device, torch_dtype, conditions.threads, min_run_time_s / rounds)
        timed = at_usual_speed(list(calls), lambda name: time_call(calls[name], conditions.threads,
                                                                   min_run_time_s / rounds),
                               rounds, gauge, progress=progress, desc="profiling", unit="entry", machine=machine)
    machine.require_steady(timed, "a latency table")
    measured = dict(zip(calls, timed.entries))
    call_ms = measured.pop(CALL).median_ms if CALL in measured else 0.0
    measured = {name: entry if name == "embeddings" else net_of_call(entry, call_ms)
                for name, entry in measured.items()}
    layers: dict[str, dict[int, Entry]] = {op: {} for op in space.ops}
    projections: dict[tuple[int, int], Entry] = {}
    head_entries: dict[str, Entry] = {}
    for name, entry in measured.items():
        kind, _, rest = name.partition("/")
        if kind == "layer":
            op, w = rest.split("/")
            layers[op][int(w)] = entry
        elif kind == "projection":
            i, o = rest.split("->")
            projections[(int(i), int(o))] = entry
        elif kind == "head":
            head_entries[rest] = entry
    wall_ms = (time.perf_counter() - start) * 1e3
    return LatencyTable(conditions, space, measured["embeddings"], layers, projections, head_entries,
                        profile={"wall_ms": round(wall_ms, 1), "min_run_time_ms": min_run_time_s * 1e3,
                                 "rounds_count": rounds, "entries_count": len(measured), "gauge": SpeedGauge.name,
                                 **({"call_overhead_ms": round(call_ms, 6)} if CALL in calls else {}),
                                 **timed.to_json()})

