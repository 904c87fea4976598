"""The runtimes a latency table is timed in: PyTorch eager, or ONNX Runtime (fp32, or int8 dynamically quantized).

A student is served in a runtime, not as a PyTorch module, and the relative cost of attention, feed-forward
and convolution changes between runtimes; so a table is timed in the runtime (and precision) the user serves
with, and records both in its conditions. Each runtime turns a torch module and the inputs it is fed into a
call without arguments, which `nasbert.latency.measure.time_call` times the same way for every runtime:

    runtime = get_runtime("onnxruntime")               # one sentence if onnxruntime is not installed
    runtime.check("int8", "cpu")                        # one sentence for a precision it cannot run here
    call = runtime.prepare(module, (x,), "int8", threads=2)   # exported, quantized, loaded in a session
    time_call(call, threads=2)

Precisions: fp32, bf16 and fp16 (torch only, where the device computes them natively) and int8 (onnxruntime
only: `onnxruntime.quantization.quantize_dynamic`, QInt8 weights; activations stay fp32 and are quantized on
the fly, so the tensors fed in are float32).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from nasbert.errors import UserError

# precision -> the torch dtype of the weights and of the floating tensors fed in (int8 is fed float32)
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}
DTYPE_PRECISIONS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
Inputs = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]  # positional, or by keyword (a tokenizer's batch)


def precision_for(precision: str | None, dtype: str | None) -> tuple[str, str]:
    """(precision, dtype) from what was asked: either one (the other follows), both (they must agree) or
    neither (fp32)."""
    if precision is not None and precision not in PRECISION_DTYPES:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_DTYPES)}")
    if dtype is not None and dtype not in DTYPE_PRECISIONS:
        raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_PRECISIONS)}")
    if precision is None:
        return DTYPE_PRECISIONS[dtype or "float32"], dtype or "float32"
    if dtype is not None and dtype != PRECISION_DTYPES[precision]:
        raise UserError(f"--precision {precision} feeds {PRECISION_DTYPES[precision]} tensors, not --dtype {dtype}; "
                        "give only --precision")
    return precision, PRECISION_DTYPES[precision]


class Runtime:
    """A runtime a table can be timed in. Subclasses: `precisions`, `version`, `prepare`."""

    name = ""
    precisions: tuple[str, ...] = ()
    # True where a whole model is one call (one graph run) while each module of a table is timed as a call of its
    # own: the call's fixed cost is then counted once per module instead of once per model (see profile_space).
    one_call_per_model = False

    def version(self) -> str:
        raise NotImplementedError

    def check(self, precision: str, device: str) -> None:
        """Refuse, in one sentence, a precision this runtime does not time on `device`."""
        if precision not in self.precisions:
            others = [name for name, runtime in RUNTIMES.items() if precision in runtime.precisions]
            raise UserError(f"the {self.name} runtime times {', '.join(self.precisions)}, not {precision}"
                            + (f"; pass --runtime {others[0]} for {precision}" if others else ""))

    def prepare(self, module: nn.Module, inputs: Inputs, precision: str, threads: int,
                keep_in: Path | None = None) -> Callable[[], object]:
        """A call without arguments that runs `module` (eval mode, on its device) on `inputs` in this runtime.
        `keep_in`: a folder where a runtime that converts the module keeps the result, and reuses it when the same
        (seeded) module is prepared again there, as each round of a student's timings does."""
        raise NotImplementedError


class TorchRuntime(Runtime):
    """PyTorch eager, as `model(**batch)` runs under inference_mode (time_call's)."""

    name = "torch"
    precisions = ("fp32", "bf16", "fp16")

    def version(self) -> str:
        return torch.__version__.split("+")[0]

    def check(self, precision: str, device: str) -> None:
        super().check(precision, device)
        if precision != "fp32" and not native_half(precision, device):
            raise UserError(f"this {device} has no native {precision} arithmetic (torch would emulate it, which no one "
                            f"serves with); time {precision} where the device has it, or use fp32")

    def prepare(self, module: nn.Module, inputs: Inputs, precision: str, threads: int,
                keep_in: Path | None = None) -> Callable[[], object]:
        module = module.eval()
        if isinstance(inputs, Mapping):
            return lambda: module(**inputs)
        return lambda: module(*inputs)


def native_half(precision: str, device: str) -> bool:
    """Whether `device` computes bf16 / fp16 natively (CUDA: bf16 from Ampere; CPU: oneDNN's AVX-512 / AMX paths)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and (precision == "fp16" or torch.cuda.is_bf16_supported())
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):  # a torch without the probe: let it run
        return True


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU (CPUExecutionProvider): each module exported with the TorchScript-based exporter
    to a temporary file, int8 dynamically quantized, and run in an InferenceSession with the table's threads
    (intra-op), one inter-op thread and sequential execution, as a latency-bound server runs it."""

    name = "onnxruntime"
    precisions = ("fp32", "int8")
    one_call_per_model = True  # session.run: feeds converted, graph run, outputs copied back

    def _onnxruntime(self):
        for package in ("onnxruntime", "onnx"):  # onnx: the exporter's checker and the quantizer need it
            try:
                module = importlib.import_module(package)
            except ImportError:
                raise UserError(f"timing in onnxruntime needs the {package} package, which is not installed: "
                                "pip install nasbert[onnx]") from None
            if module is None:  # a package blocked in sys.modules
                raise UserError(f"timing in onnxruntime needs the {package} package: pip install nasbert[onnx]")
        return importlib.import_module("onnxruntime")

    def version(self) -> str:
        return self._onnxruntime().__version__

    def check(self, precision: str, device: str) -> None:
        self._onnxruntime()
        super().check(precision, device)
        if device != "cpu":
            raise UserError(f"onnxruntime tables are timed on the cpu (CPUExecutionProvider), not {device}; "
                            "pass --device cpu, or --runtime torch for a GPU table")

    def prepare(self, module: nn.Module, inputs: Inputs, precision: str, threads: int,
                keep_in: Path | None = None) -> Callable[[], object]:
        self._onnxruntime()
        with contextlib.ExitStack() as stack:
            folder = keep_in or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nasbert-ort-")))
            path = folder / f"module.{precision}.onnx"
            if not path.exists():  # exporting and quantizing take seconds, far longer than a timing
                folder.mkdir(parents=True, exist_ok=True)
                if precision == "int8":
                    quantize_int8(export_module(module, inputs, folder / "module.onnx"), path)
                else:
                    export_module(module, inputs, path)
            session = ort_session(path, threads)
        # The exporter drops inputs the graph never reads (an all-ones mask the model skips); feed the rest.
        names, tensors = _positional(inputs)
        feeds = {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, tensors)}
        feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
        return lambda: session.run(None, feeds)


class _Positional(nn.Module):
    """`module` called with keyword inputs given positionally, returning a flat tuple of tensors (the tracer's
    terms): a ModelOutput's or dict's tensors in order, None (e.g. no pooler) left out."""

    def __init__(self, module: nn.Module, names: list[str] | None):
        super().__init__()
        self.module, self.names = module, names

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(**dict(zip(self.names, args))) if self.names else self.module(*args)
        if isinstance(out, torch.Tensor):
            return (out,)
        values = out.values() if isinstance(out, Mapping) else out
        return tuple(v for v in values if isinstance(v, torch.Tensor))


def _positional(inputs: Inputs) -> tuple[list[str], list[torch.Tensor]]:
    if isinstance(inputs, Mapping):
        return list(inputs), list(inputs.values())
    return [f"input_{n}" for n in range(len(inputs))], list(inputs)


def export_module(module: nn.Module, inputs: Inputs, path: Path) -> Path:
    """`module` (eval) as an ONNX graph at `path`, traced on `inputs` with their shapes fixed (a table entry holds
    for one batch size and seq len). Keyword inputs keep their names in the graph; positional ones are input_N."""
    names, tensors = _positional(inputs)
    wrapper = _Positional(module.eval(), names if isinstance(inputs, Mapping) else None).eval()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer fixes Python branches on tensors (e.g. `attention_mask.all()`) at the example: the path an
        # unpadded batch takes, which is the one timed; torch also announces this exporter is the legacy one.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx\.")
        torch.onnx.export(wrapper, tuple(tensors), str(path), input_names=names, dynamo=False)
    return path


# What int8 means, in a table and in an exported graph alike (export.serving quantizes with this function):
# onnxruntime's quantize_dynamic, QInt8 weights with one scale per output channel, activations quantized on the fly,
# MatMul nodes only. Measured on all-MiniLM-L6-v2's encoder (8 SST-2 sentences, an AVX2 CPU without VNNI,
# 1 thread): one weight scale per tensor gave a cosine of 0.950 to the fp32 graph's last hidden state, one per
# channel 0.989 at the same speed; quantizing the depthwise convolutions too (ConvInteger) made a
# convolution-heavy student slower than its fp32 graph (13.7 vs 11.3 ms; MatMul only: 7.2 ms).
INT8_OP_TYPES = ("MatMul",)


def quantize_int8(source: Path, target: Path) -> Path:
    """onnxruntime's dynamic quantization of `source` into `target` (the settings: INT8_OP_TYPES above)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():  # it advises pre-processing on the root logger for every model
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(INT8_OP_TYPES))
    return target


def ort_session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session as a latency-bound server runs one: `threads` intra-op threads (None:
    onnxruntime's default), one inter-op thread, sequential execution."""
    ort = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no notes on unused initializers in every session
    # No busy-waiting between runs: ORT's idle workers otherwise spin on the cores and slow whatever runs next in
    # this process (torch beside it in a comparison, the speed gauge): measured, all-MiniLM-L6-v2 at 1 x 128 on
    # 2 threads took 45 ms in PyTorch alone and 109-127 ms between spinning ORT runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in (TorchRuntime(), OnnxRuntime())}


def get_runtime(name: str) -> Runtime:
    """The registered runtime `name`; an unknown name is refused in one sentence."""
    if name not in RUNTIMES:
        raise UserError(f"unknown runtime {name!r}; use one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]
