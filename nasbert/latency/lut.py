"""The latency lookup table (`lut.json`): its format, the conditions it holds for, and the predictor.
(One file of ~460 lines on purpose: the format, the checks that refuse a bad file and the predictor that reads
it are one concern, and the review that split other files asked to keep this one.)

A table is measured once on the target device (`nasbert latency profile`) and answers, for any arch of
its space, latency(arch) = embeddings + every projection (E->w_1, w_n->w_n+1, w_N->H) + every
non-identity layer's (op, width) entry (+ heads). Calibration (`nasbert latency calibrate`) stores a
correction fitted on whole students; once present it is used by default.

Units live in the key names: every number of the measured sections is `*_ms` (or a dimensionless
`*_factor`, `*_percent`, `*_fraction`, `*_count`, `*_tau`), or sits in a map whose name says so
(`family_factor: {"M": 1.04}`). A table with a number that has no unit, or another unit, is refused, as
is predicting for conditions (device, threads, batch, seq len, dtype, torch, runtime and its version,
precision) other than the table's. Tables without the runtime keys are torch tables.

    {"format": "nasbert-latency-table", "version": 1, "units": {"time": "ms"},
     "conditions": {"device": "cpu", "device_name": "...", "threads": 2, "batch_size": 1, "seq_len": 128,
                    "dtype": "float32", "torch_version": "2.13.0", "date": "2026-...",
                    "runtime": "onnxruntime", "runtime_version": "1.32.0", "precision": "int8"},
     "space": {...SearchSpace fields...},
     "embeddings": {"median_ms": 0.1, "iqr_ms": 0.01, "runs_count": 200},
     "layers": {"M": {"128": {"median_ms": ..., ...}, ...}, "F": {...}, ...},
     "projections": {"768->128": {...}, "128->192": {...}, ...},
     "heads": {"pooler": {...}, "mlm": {...}, ...},
     "calibration": {"constant_ms": ..., "layer_ms": ..., "family_factor": {"projection": ..., "M": ...}, ...},
     "validation": {"raw": {"mape_percent": ..., ...}, "calibrated": {...}, ...}}
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasbert.errors import UserError
from nasbert.latency.runtimes import DTYPE_PRECISIONS, get_runtime, precision_for
from search_space import Arch, BlockArch, SearchSpace, get_op
from search_space.ops import FAMILIES as OP_FAMILIES
from search_space.ops import IDENTITY_NAME

FORMAT = "nasbert-latency-table"
VERSION = 1
TIME_UNIT = "ms"
# Suffixes a number's key (or the key of the map holding it) may carry, and what they mean.
UNIT_SUFFIXES = {"_ms": "milliseconds", "_factor": "dimensionless multiplier", "_percent": "percent",
                 "_fraction": "share between 0 and 1", "_count": "count", "_tau": "rank correlation"}
FOREIGN_TIME_SUFFIXES = ("_s", "_sec", "_secs", "_seconds", "_us", "_usec", "_ns", "_msec", "_millis", "_ticks")
UNITLESS_KEYS = {"version", "seed"}  # identifiers, not quantities
MEASURED_SECTIONS = ("embeddings", "layers", "projections", "heads", "calibration", "validation", "profile")
HEADS = ("pooler", "mlm", "classifier", "token_classifier", "qa")
# The heads each model class runs after the encoder (NasbertModel has a pooler unless built without one).
MODEL_HEADS = {"NasbertModel": ("pooler",), "NasbertForMaskedLM": ("mlm",),
               "NasbertForSequenceClassification": ("pooler", "classifier"),
               "NasbertForTokenClassification": ("token_classifier",), "NasbertForQuestionAnswering": ("qa",)}
PROJECTION = "projection"  # the calibration family of every projection; the others are op families
MIN_PLAUSIBLE_MS = 1e-3  # no module of a student runs in under 1 us (a table in seconds would, under *_ms keys)
# The speed gauge (measure.GAUGE_ARCH: 11 layers and 3 projections, over a hundred eager ops) cannot run in under
# 0.1 ms on any device: PyTorch dispatches an op in microseconds. Its usual reading is 10-40 ms on a 2-core CPU,
# so a table in seconds (0.01-0.04 "ms") is caught however slow the machine was, where the entries' own floor
# misses a tiny space's table profiled on a loaded machine (its largest entry then over 1 ms).
MIN_PLAUSIBLE_GAUGE_MS = 0.1


class LatencyTableError(UserError):
    """A table that cannot be used: unreadable, unit-less, for other conditions, or missing an entry."""


def layer_count(arch: Arch | str) -> int:
    """The real (non-identity) layers of an arch."""
    arch = Arch.parse(arch) if isinstance(arch, str) else arch
    return sum(len(block.active_ops) for block in arch)


def op_family(op: str) -> str:
    """Calibration family of an op: its family in the op registry (S3, S5, S7 share one, "S")."""
    return get_op(op).family


def known_families() -> tuple[str, ...]:
    """Every family a calibration may fit a factor for: projections and every registered op family."""
    return (PROJECTION,) + tuple(f for f in OP_FAMILIES if f != IDENTITY_NAME)


def device_name(device: str) -> str:
    """A human name of the device the numbers hold for: the CPU model, or the CUDA device's name."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LatencyTableError("timing on cuda needs a CUDA device, and torch sees none on this machine; run "
                                    "where the GPU is, or profile a cpu table here")
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


@dataclass(frozen=True)
class Conditions:
    """What a latency holds for: the device, the settings, and the runtime and precision it was timed in.
    `date` is recorded, never compared."""

    device: str
    device_name: str
    threads: int
    batch_size: int
    seq_len: int
    dtype: str  # of the tensors fed in (an int8 table is fed float32)
    torch_version: str
    date: str = ""
    runtime: str = "torch"  # a name of nasbert.latency.runtimes.RUNTIMES
    runtime_version: str = ""
    precision: str = "fp32"  # fp32, bf16, fp16 or int8

    COMPARED = ("device", "device_name", "threads", "batch_size", "seq_len", "dtype", "torch_version", "runtime",
                "runtime_version", "precision")

    @classmethod
    def current(cls, device: str = "cpu", threads: int | None = None, batch_size: int = 1, seq_len: int = 128,
                dtype: str | None = None, runtime: str = "torch", precision: str | None = None) -> Conditions:
        """The conditions of this machine and process for the given settings (refused in one sentence where the
        runtime is not installed or cannot run the precision here)."""
        device = "cuda" if device.startswith("cuda") else device
        precision, dtype = precision_for(precision, dtype)
        timer = get_runtime(runtime)
        timer.check(precision, device)
        return cls(device=device, device_name=device_name(device), threads=int(threads or torch.get_num_threads()),
                   batch_size=int(batch_size), seq_len=int(seq_len), dtype=dtype,
                   torch_version=torch.__version__.split("+")[0],
                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   runtime=runtime, runtime_version=timer.version(), precision=precision)

    def mismatches(self, other: Conditions) -> list[str]:
        """'name: ours vs theirs' for every compared field that differs."""
        return [f"{name} {getattr(self, name)!r} vs {getattr(other, name)!r}" for name in self.COMPARED
                if getattr(self, name) != getattr(other, name)]

    def describe(self) -> str:
        served = f"{self.dtype}, torch {self.torch_version}"
        if self.runtime != "torch":
            served = (f"{self.precision} in {self.runtime} {self.runtime_version} "
                      f"(exported from torch {self.torch_version})")
        return (f"{self.device} ({self.device_name}), {self.threads} threads, batch {self.batch_size}, "
                f"seq {self.seq_len}, {served}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Conditions:
        """Tables from before runtimes were recorded read as timed in torch, at the precision of their dtype."""
        types = {"device": str, "device_name": str, "threads": int, "batch_size": int, "seq_len": int, "dtype": str,
                 "torch_version": str, "date": str, "runtime": str, "runtime_version": str, "precision": str}
        if not isinstance(data, dict):
            raise LatencyTableError(f"{where} has no 'conditions' block; re-profile it with `nasbert latency profile`")
        if "runtime" not in data:
            data = {"runtime": "torch", "runtime_version": data.get("torch_version"),
                    "precision": DTYPE_PRECISIONS.get(data.get("dtype"), data.get("dtype")), **data}
        missing = [k for k in types if k not in data]
        if missing:
            raise LatencyTableError(f"{where} does not record the condition(s) {', '.join(missing)} it was measured "
                                    "under; re-profile it with `nasbert latency profile`")
        wrong = [k for k, t in types.items() if not isinstance(data[k], t) or isinstance(data[k], bool)]
        if wrong:
            raise LatencyTableError(f"{where} has condition(s) of the wrong type: {', '.join(wrong)}")
        return cls(**{k: data[k] for k in types})


@dataclass(frozen=True)
class Entry:
    """One measured module: median and interquartile range of its time per call, in ms."""

    median_ms: float
    iqr_ms: float
    runs_count: int

    def to_json(self) -> dict[str, Any]:
        return {"median_ms": round(self.median_ms, 6), "iqr_ms": round(self.iqr_ms, 6), "runs_count": self.runs_count}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Entry:
        if not isinstance(data, dict) or not _is_number(data.get("median_ms")):
            raise LatencyTableError(f"{where} has no median_ms; re-profile it with `nasbert latency profile`")
        median = float(data["median_ms"])
        if not median > 0:
            raise LatencyTableError(f"{where} has a median_ms of {median}, which is not a positive time")
        return cls(median, float(data.get("iqr_ms", 0.0)), int(data.get("runs_count", 0)))


@dataclass
class Calibration:
    """latency = embeddings + heads + constant_ms + sum over families of family_factor[f] * raw sum of f
    + layer_ms * the arch's real (non-identity) layers."""

    constant_ms: float
    family_factor: dict[str, float]
    seed: int = 0
    archs: list[str] = field(default_factory=list)  # the students it was fitted on
    heads: tuple[str, ...] = ("pooler",)  # the heads those students ran
    fit: dict[str, float] = field(default_factory=dict)  # e.g. fit_mape_percent
    # what a whole forward adds per layer beyond the layer's own table time (Python work, cache); 0 in tables
    # calibrated before it existed
    layer_ms: float = 0.0

    def layer(self, op: str, raw_ms: float) -> float:
        """The calibrated time of one real layer whose table entry is `raw_ms`."""
        return self.family_factor.get(op_family(op), 1.0) * raw_ms + self.layer_ms

    def negative_layers(self, layers: dict[str, dict[int, Entry]]) -> list[str]:
        """'S3 at width 16: -2.83 ms' for every table layer (op -> width -> entry) this calibration prices below 0."""
        priced = ((op, w, self.layer(op, e.median_ms)) for op, by_width in layers.items() for w, e in by_width.items())
        return [f"{op} at width {w}: {ms:.2f} ms" for op, w, ms in priced if ms < 0]

    def to_json(self) -> dict[str, Any]:
        return {"constant_ms": round(self.constant_ms, 6), "layer_ms": round(self.layer_ms, 6),
                "family_factor": {k: round(v, 6) for k, v in self.family_factor.items()},
                "seed": self.seed, "samples_count": len(self.archs), "heads": list(self.heads),
                "archs": list(self.archs), **{k: _round(v) for k, v in self.fit.items()}}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Calibration:
        if not isinstance(data, dict) or not _is_number(data.get("constant_ms")) or not isinstance(
                data.get("family_factor"), dict):
            raise LatencyTableError(f"{where} has a calibration without constant_ms and family_factor; "
                                    "run `nasbert latency calibrate` again")
        factors = {str(k): float(v) for k, v in data["family_factor"].items()}
        unknown = set(factors) - set(known_families())
        if unknown:
            raise LatencyTableError(f"{where} calibrates unknown op families {sorted(unknown)}; "
                                    f"known are {', '.join(known_families())}")
        fit = {k: float(v) for k, v in data.items() if k.endswith(("_percent", "_fraction", "_tau")) and _is_number(v)}
        layer_ms = data.get("layer_ms", 0.0)
        if not _is_number(layer_ms):
            raise LatencyTableError(f"{where} has a calibration whose layer_ms is not a number; "
                                    "run `nasbert latency calibrate` again")
        return cls(float(data["constant_ms"]), factors, int(data.get("seed", 0)), list(data.get("archs", [])),
                   tuple(data.get("heads", ("pooler",))), fit, float(layer_ms))


def _round(value: Any) -> Any:
    """A number, or a list of numbers, to 6 decimals."""
    return [round(v, 6) for v in value] if isinstance(value, list | tuple) else round(value, 6)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _has_unit(key: str) -> bool:
    return key.endswith(tuple(UNIT_SUFFIXES))


def check_units(data: Mapping[str, Any], where: str) -> None:
    """Refuse a table whose time unit is not ms, or where a number's key (or its map's key) names no unit."""
    units = data.get("units")
    if not isinstance(units, dict) or "time" not in units:
        raise LatencyTableError(f"{where} does not say its units (no \"units\": {{\"time\": \"ms\"}}); "
                                "re-profile it with `nasbert latency profile`")
    if units["time"] != TIME_UNIT:
        raise LatencyTableError(f"{where} has time unit {units['time']!r}, which this version does not read; "
                                f"tables are in {TIME_UNIT}, re-profile it with `nasbert latency profile`")

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)])
        elif isinstance(node, list):
            for n, value in enumerate(node):
                walk(value, path + [str(n)])
        elif _is_number(node):
            key, parent = path[-1], (path[-2] if len(path) > 1 else "")
            dotted = ".".join(path)
            if key.endswith(FOREIGN_TIME_SUFFIXES) or parent.endswith(FOREIGN_TIME_SUFFIXES):
                raise LatencyTableError(f"{where} has {dotted} in a unit other than {TIME_UNIT}; tables hold "
                                        f"times as *_{TIME_UNIT} only, re-profile it with `nasbert latency profile`")
            if not (_has_unit(key) or _has_unit(parent) or key in UNITLESS_KEYS):
                raise LatencyTableError(f"{where} has a number without a unit at {dotted} (key names must end "
                                        f"in one of {', '.join(UNIT_SUFFIXES)}); re-profile it")

    for section in MEASURED_SECTIONS:
        if section in data:
            walk(data[section], [section])
    unknown = sorted(k for k, v in data.items() if k not in MEASURED_SECTIONS and k not in (
        "format", "version", "units", "conditions", "space") and _is_number(v))
    if unknown:
        raise LatencyTableError(f"{where} has a number without a unit at {unknown[0]}; re-profile it")


def projection_key(in_width: int, out_width: int) -> str:
    return f"{in_width}->{out_width}"


@dataclass
class LatencyTable:
    """Per-module latencies of one space under one set of conditions, and the predictor built on them."""

    conditions: Conditions
    space: SearchSpace
    embeddings: Entry
    layers: dict[str, dict[int, Entry]]  # op -> width -> entry
    projections: dict[tuple[int, int], Entry]  # (in, out) -> entry
    heads: dict[str, Entry] = field(default_factory=dict)
    calibration: Calibration | None = None
    validation: dict[str, Any] | None = None
    profile: dict[str, Any] = field(default_factory=dict)  # how it was measured: wall_ms, min_run_time_ms, ...
    source: str = "the latency table"  # where it came from, for messages

    # ---- conditions and space ---------------------------------------------------------------------------

    def require_runtime(self, runtime: str | None = None, precision: str | None = None) -> None:
        """Refuse a request for another runtime or precision than the table's (None: the table's)."""
        cond = self.conditions
        if runtime is not None:
            get_runtime(runtime)  # an unknown name is refused as such
        if precision is not None:
            precision_for(precision, None)
        if runtime not in (None, cond.runtime) or precision not in (None, cond.precision):
            asked = " ".join(x for x in (runtime, precision) if x is not None)
            runtime = runtime or cond.runtime  # what to profile: the rest of the request as the table has it
            precision = precision or (cond.precision if cond.precision in get_runtime(runtime).precisions else "fp32")
            raise LatencyTableError(f"{self.source} was timed in {cond.runtime} {cond.precision}, not in {asked} as "
                                    f"requested; profile a table for it with `nasbert latency profile --runtime "
                                    f"{runtime} --precision {precision}` or ask for the table's")

    def require(self, conditions: Conditions) -> None:
        """Refuse to answer for conditions other than the table's (date excepted)."""
        differences = self.conditions.mismatches(conditions)
        if differences:
            raise LatencyTableError(f"{self.source} was measured under other conditions ({'; '.join(differences)}, "
                                    "table vs requested); profile a table under these conditions with "
                                    "`nasbert latency profile` or request the table's")

    def check_space(self, space: SearchSpace) -> None:
        """Refuse a space whose modules the table has not measured (other widths, ops, E, H or shapes)."""
        mine, theirs = self.space, space
        for name in ("hidden_size", "embedding_dim", "head_dim", "ffn_ratio", "vocab_size", "max_position_embeddings",
                     "type_vocab_size"):
            if getattr(mine, name) != getattr(theirs, name):
                raise LatencyTableError(f"{self.source} was profiled for {name} {getattr(mine, name)}, not "
                                        f"{getattr(theirs, name)}; profile this space with `nasbert latency profile`")
        missing = [f"{op}@{w}" for op in theirs.ops for w in theirs.widths if w not in self.layers.get(op, {})]
        if missing:
            raise LatencyTableError(f"{self.source} has no entries for {', '.join(missing[:4])}"
                                    f"{' ...' if len(missing) > 4 else ''}; profile this space with "
                                    "`nasbert latency profile --space`")

    # ---- prediction -------------------------------------------------------------------------------------

    @property
    def families(self) -> tuple[str, ...]:
        """What calibration fits one factor for: projections and the op families of the table's space."""
        return (PROJECTION,) + self.space.families

    def layer_entry(self, op: str, width: int) -> Entry:
        try:
            return self.layers[op][width]
        except KeyError:
            raise LatencyTableError(f"{self.source} has no entry for op {op} at width {width}; profile the space "
                                    "you search with `nasbert latency profile --space`") from None

    def projection_entry(self, in_width: int, out_width: int) -> Entry:
        try:
            return self.projections[(in_width, out_width)]
        except KeyError:
            raise LatencyTableError(f"{self.source} has no entry for the projection {in_width}->{out_width}; "
                                    "profile the space you search with `nasbert latency profile --space`") from None

    def head_entry(self, head: str) -> Entry:
        if head not in self.heads:
            raise LatencyTableError(f"{self.source} has no entry for head {head!r}; it has "
                                    f"{', '.join(self.heads) or 'none'}")
        return self.heads[head]

    def components_ms(self, arch: Arch | str, heads: Iterable[str] = ()) -> dict[str, float]:
        """Raw table sums of one arch by part: embeddings, heads, and each calibration family."""
        arch = Arch.parse(arch) if isinstance(arch, str) else arch
        parts = dict.fromkeys(("embeddings", "heads") + self.families, 0.0)
        parts["embeddings"] = self.embeddings.median_ms
        parts["heads"] = sum(self.head_entry(h).median_ms for h in heads)
        for block in arch:
            for op in block.active_ops:
                entry = self.layer_entry(op, block.width)  # refuses an op the table has not measured
                parts[op_family(op)] += entry.median_ms
        for in_width, out_width in self.space.projection_widths(arch):
            parts[PROJECTION] += self.projection_entry(in_width, out_width).median_ms
        return parts

    def block_ms(self, block: BlockArch) -> float:
        """A block's real layers priced as `predict_ms` prices them: calibrated where the table is, else raw."""
        calibration = self.calibration or Calibration(0.0, {})
        return sum(calibration.layer(op, self.layer_entry(op, block.width).median_ms) for op in block.active_ops)

    def predict_ms(self, arch: Arch | str, heads: Iterable[str] = (), calibrated: bool | None = None,
                   conditions: Conditions | None = None) -> float:
        """Predicted latency of `arch` in ms: the sum of its entries, corrected by the calibration if the table has
        one (`calibrated=None`), or on request (True; refused without a calibration) / never (False).
        With `conditions`, refused unless they are the table's."""
        if conditions is not None:
            self.require(conditions)
        parts = self.components_ms(arch, heads)
        if calibrated is None:
            calibrated = self.calibration is not None
        if not calibrated:
            return sum(parts.values())
        if self.calibration is None:
            raise LatencyTableError(f"{self.source} is not calibrated; run `nasbert latency calibrate` first")
        cal = self.calibration
        return (parts["embeddings"] + parts["heads"] + cal.constant_ms + cal.layer_ms * layer_count(arch)
                + sum(cal.family_factor.get(f, 1.0) * parts[f] for f in self.families))

    # ---- the file ---------------------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        """Every entry by a flat name: embeddings, layer/M/128, projection/768->128, head/pooler."""
        flat = {"embeddings": self.embeddings}
        flat.update({f"layer/{op}/{w}": e for op, by_width in self.layers.items() for w, e in by_width.items()})
        flat.update({f"projection/{projection_key(*k)}": e for k, e in self.projections.items()})
        flat.update({f"head/{h}": e for h, e in self.heads.items()})
        return flat

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "units": {"time": TIME_UNIT},
                                "conditions": self.conditions.to_json(), "space": self.space.to_json(),
                                "embeddings": self.embeddings.to_json(),
                                "layers": {op: {str(w): e.to_json() for w, e in sorted(by_width.items())}
                                           for op, by_width in self.layers.items()},
                                "projections": {projection_key(*k): e.to_json() for k, e in self.projections.items()},
                                "heads": {h: e.to_json() for h, e in self.heads.items()}}
        if self.profile:
            data["profile"] = self.profile
        if self.calibration is not None:
            data["calibration"] = self.calibration.to_json()
        if self.validation is not None:
            data["validation"] = self.validation
        return data

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename), so a failure never leaves half a table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        check_units(self.to_json(), str(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.source = str(path)
        return path

    @classmethod
    def from_json(cls, data: Any, where: str = "the latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyTableError(f"{where} is not a nasbert latency table (no \"format\": \"{FORMAT}\"); "
                                    "make one with `nasbert latency profile`")
        if data.get("version") != VERSION:
            raise LatencyTableError(f"{where} has table version {data.get('version')!r}, this nasbert reads "
                                    f"version {VERSION}; re-profile it")
        check_units(data, where)
        conditions = Conditions.from_json(data.get("conditions"), where)
        try:
            space = SearchSpace.from_json(data["space"])
        except (KeyError, TypeError, ValueError) as error:
            raise LatencyTableError(f"{where} does not hold a valid search space ({error}); re-profile it") from None
        for section in ("embeddings", "layers", "projections"):
            if not isinstance(data.get(section), dict):
                raise LatencyTableError(f"{where} has no '{section}' section; re-profile it")
        try:
            layers = {op: {int(w): Entry.from_json(e, f"{where} layers.{op}.{w}") for w, e in by_width.items()}
                      for op, by_width in data["layers"].items()}
            projections = {}
            for key, e in data["projections"].items():
                in_text, sep, out_text = key.partition("->")
                if not sep:
                    raise ValueError(f"projection key {key!r} is not in->out")
                projections[(int(in_text), int(out_text))] = Entry.from_json(e, f"{where} projections.{key}")
        except (AttributeError, ValueError) as error:
            raise LatencyTableError(f"{where} has a malformed entry ({error}); re-profile it") from None
        heads = {h: Entry.from_json(e, f"{where} heads.{h}") for h, e in (data.get("heads") or {}).items()}
        calibration = Calibration.from_json(data["calibration"], where) if "calibration" in data else None
        table = cls(conditions, space, Entry.from_json(data["embeddings"], f"{where} embeddings"), layers, projections,
                    heads, calibration, data.get("validation"), data.get("profile") or {}, where)
        table.check_plausible()
        negative = calibration.negative_layers(layers) if calibration else []
        if negative:
            raise LatencyTableError(f"{where} has a calibration that prices layers below zero ({negative[0]}; "
                                    f"per-layer term {calibration.layer_ms:+.2f} ms), which no search can use; "
                                    "calibrate it again (`nasbert latency calibrate`, more --samples, on a quiet "
                                    "machine)")
        return table

    def check_plausible(self) -> None:
        """Refuse times that cannot be milliseconds (e.g. seconds under *_ms keys, which would predict ~0 ms for
        every student): every entry under 1 us, a speed gauge (a fixed student of over a hundred ops) under 0.1 ms,
        or entries whose runs add up to far less than the time the profile says it timed each one for."""
        entries = list(self.entries().values())
        largest = max(e.median_ms for e in entries)
        advice = "its times are not milliseconds (seconds under *_ms keys?); re-profile it (`nasbert latency profile`)"
        if largest < MIN_PLAUSIBLE_MS:
            raise LatencyTableError(f"every entry of {self.source} is under 1 us (the largest is {largest:.3g} ms), "
                                    f"which no module takes, so {advice}")
        gauge = self.profile.get("gauge_reference_ms")
        # tables profiled before the gauge was a student timed a small matmul, which may take under 0.1 ms
        a_student = str(self.profile.get("gauge", "")).startswith("student ")
        floor = MIN_PLAUSIBLE_GAUGE_MS if a_student else MIN_PLAUSIBLE_MS
        if _is_number(gauge) and 0 < gauge < floor:
            raise LatencyTableError(f"{self.source} says its speed gauge took {gauge:.3g} ms, which no machine "
                                    f"does, so {advice}")
        run_time = self.profile.get("min_run_time_ms")
        shares = sorted(e.runs_count * e.median_ms / run_time for e in entries if e.runs_count > 0) if (
            _is_number(run_time) and run_time > 0) else []
        if shares and shares[len(shares) // 2] < 0.05:
            raise LatencyTableError(f"the entries of {self.source} disagree with its own profile (their runs add up "
                                    f"to {shares[len(shares) // 2]:.2%} of the {run_time:g} ms each entry was timed "
                                    f"for), so {advice}")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LatencyTableError(f"latency table {path} does not exist; make one with `nasbert latency profile`") \
                from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise LatencyTableError(f"latency table {path} is not readable JSON ({error})") from None
        return cls.from_json(data, str(path))
