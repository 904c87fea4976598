"""Latency tables timed in another runtime: ONNX Runtime fp32 and int8 tables, their conditions, refusals of a
table of another runtime or precision, calibration in the table's runtime, old tables, a missing onnxruntime."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from types import SimpleNamespace

import onnx
import onnxruntime
import pytest
import torch

from nasbert.cli import main
from nasbert.errors import UserError
from nasbert.latency import LatencyTable, LatencyTableError, calibrate, profile_space, runtimes
from nasbert.latency.profile import _Layer
from nasbert.latency.runtimes import RUNTIMES, OnnxRuntime, export_module, quantize_int8
from nasbert.latency.students import arch_timer
from nasbert.modeling_nasbert import NasbertLayer
from nasbert.search.config import SearchConfig
from nasbert.search.select import measurer, search
from nasbert.student import student_config
from search_space import SearchSpace

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["--min-run-time", "0.005", "--rounds", "1", "--no-progress"]
ARCH = "16:M,F,I,I/32:S3,M,I,I"


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.tiny()


def _profile(space: SearchSpace, precision: str) -> LatencyTable:
    return profile_space(space, threads=1, seq_len=16, min_run_time_s=0.005, rounds=1, heads=("pooler",),
                         progress=False, runtime="onnxruntime", precision=precision)


@pytest.fixture(scope="module")
def ort_tables(space) -> dict[str, LatencyTable]:
    return {precision: _profile(space, precision) for precision in ("fp32", "int8")}


@pytest.fixture
def int8_file(ort_tables, tmp_path):
    path = tmp_path / "lut-ort-int8.json"
    ort_tables["int8"].save(path)
    return path


@pytest.fixture
def spy_prepare(monkeypatch):
    """Records every module onnxruntime is asked to run (the real preparation still runs)."""
    prepared = []
    real = OnnxRuntime.prepare

    def prepare(self, module, inputs, precision, threads, keep_in=None):
        prepared.append((type(module).__name__, precision))
        return real(self, module, inputs, precision, threads, keep_in)

    monkeypatch.setattr(OnnxRuntime, "prepare", prepare)
    return prepared


def one_sentence_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_onnxruntime_table_holds_every_op_width_and_records_its_runtime(space, ort_tables, precision):
    table = ort_tables[precision]
    assert {op: set(by_width) for op, by_width in table.layers.items()} == {op: set(space.widths) for op in space.ops}
    e, h, widths = space.embedding_dim, space.hidden_size, space.widths
    assert set(table.projections) == {(e, w) for w in widths} | {(a, b) for a in widths for b in widths} | {
        (w, h) for w in widths}
    assert set(table.heads) == {"pooler"} and all(e.median_ms > 0 for e in table.entries().values())
    cond = table.conditions
    assert (cond.runtime, cond.runtime_version, cond.precision, cond.dtype) == (
        "onnxruntime", onnxruntime.__version__, precision, "float32")
    assert f"{precision} in onnxruntime {onnxruntime.__version__}" in cond.describe()
    assert table.profile["call_overhead_ms"] > 0  # a student is one session.run: the sums count its cost once
    assert table.predict_ms(ARCH, conditions=cond) > 0


def test_int8_modules_are_quantized_and_fp32_ones_match_torch(space, tmp_path):
    torch.manual_seed(0)
    layer = _Layer(NasbertLayer(student_config(space, space.largest_arch()), "F", 32)).eval()
    x = torch.randn(1, 16, 32)  # (B, T, w)
    path = export_module(layer, (x,), tmp_path / "layer.onnx")
    ops = {node.op_type for node in onnx.load(str(quantize_int8(path, tmp_path / "layer.int8.onnx"))).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    assert "MatMulInteger" not in {node.op_type for node in onnx.load(str(path)).graph.node}
    out = RUNTIMES["onnxruntime"].prepare(layer, (x,), "fp32", threads=1)()[0]  # what the table times
    with torch.no_grad():
        assert abs(out - layer(x).numpy()).max() < 1e-4


def test_a_table_of_another_runtime_or_precision_is_refused_for_prediction(ort_tables, int8_file, capsys):
    table = ort_tables["int8"]
    for change in (dict(runtime="torch"), dict(precision="fp32"), dict(runtime_version="1.0.0")):
        with pytest.raises(LatencyTableError, match="other conditions"):
            table.predict_ms(ARCH, conditions=replace(table.conditions, **change))
    table.require_runtime("onnxruntime", "int8")  # the table's own: fine
    with pytest.raises(LatencyTableError, match="not in fp32 as requested.*--runtime onnxruntime --precision fp32"):
        table.require_runtime(precision="fp32")
    assert main(["latency", "predict", ARCH, "--lut", str(int8_file), "--runtime", "torch"]) == 2
    err = one_sentence_error(capsys)
    assert "timed in onnxruntime int8, not in torch as requested" in err
    assert "profile --runtime torch --precision fp32`" in err
    assert main(["latency", "predict", ARCH, "--lut", str(int8_file)]) == 0
    assert "int8 in onnxruntime" in capsys.readouterr().out


def test_search_refuses_a_table_of_another_runtime_and_measures_in_the_tables(space, ort_tables, spy_prepare):
    run = SimpleNamespace(space=space)  # the refusal comes before the run's blocks are read
    for asked in (dict(runtime="torch"), dict(precision="fp32")):
        with pytest.raises(LatencyTableError, match="timed in onnxruntime int8"):
            search(run, SearchConfig(latency_budget=["5ms"], **asked), ort_tables["int8"])
    assert callable(measurer(ort_tables["int8"], measure=3)[0])  # the table is for this machine: leaders are timed
    assert arch_timer(ort_tables["int8"], min_run_time_s=0.005, rounds=1)(ARCH) > 0  # as search times them
    assert set(spy_prepare) == {("NasbertModel", "int8")}  # the leader ran in onnxruntime, quantized


def test_calibrate_times_the_students_in_the_tables_runtime(space, ort_tables, spy_prepare, monkeypatch):
    exported = []
    real_export = runtimes.export_module
    monkeypatch.setattr(runtimes, "export_module", lambda *args: exported.append(args[2]) or real_export(*args))
    table = replace(ort_tables["int8"])
    calibration = calibrate(table, samples=2, min_run_time_s=0.005, rounds=3, progress=False)
    assert len(calibration.archs) == 2 and table.calibration is calibration
    assert spy_prepare == [("NasbertModel", "int8")] * 6  # 2 students x 3 rounds, each in onnxruntime int8
    assert len(exported) == 2  # each student exported and quantized once, in its first round
    assert not any(path.parent.exists() for path in exported)  # and its graphs removed at the end


def test_a_table_without_runtime_keys_reads_as_torch_at_its_dtype(ort_tables, tmp_path):
    data = ort_tables["fp32"].to_json()
    for key in ("runtime", "runtime_version", "precision"):
        del data["conditions"][key]
    old = LatencyTable.from_json(data, "old.json")
    cond = old.conditions
    assert (cond.runtime, cond.runtime_version, cond.precision) == ("torch", cond.torch_version, "fp32")
    data["conditions"]["dtype"] = "bfloat16"
    assert LatencyTable.from_json(data, "old.json").conditions.precision == "bf16"
    old.save(tmp_path / "again.json")  # written with the keys from now on
    assert json.loads((tmp_path / "again.json").read_text())["conditions"]["runtime"] == "torch"


@pytest.mark.parametrize("argv, message", [
    (["--runtime", "torch", "--precision", "int8"], "the torch runtime times fp32, bf16, fp16, not int8; pass "
                                                    "--runtime onnxruntime for int8"),
    (["--runtime", "onnxruntime", "--precision", "bf16"], "the onnxruntime runtime times fp32, int8, not bf16"),
    (["--precision", "fp16", "--dtype", "bfloat16"], "--precision fp16 feeds float16 tensors, not --dtype bfloat16"),
    (["--runtime", "onnxruntime", "--device", "cuda"], "on the cpu"),
])
def test_profile_refuses_a_precision_the_runtime_cannot_time(argv, message, tmp_path, capsys):
    if "--device" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["latency", "profile", "--output", str(tmp_path / "lut.json"), *argv, *FAST]) == 2
    assert message in one_sentence_error(capsys)
    assert not (tmp_path / "lut.json").exists()


def test_a_missing_onnxruntime_is_one_sentence(ort_tables, int8_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    assert main(["latency", "profile", "--output", str(tmp_path / "lut.json"), "--runtime", "onnxruntime",
                 *FAST]) == 2
    assert "pip install nasbert[onnx]" in one_sentence_error(capsys)
    assert main(["latency", "calibrate", "--lut", str(int8_file), "--samples", "2", *FAST]) == 2
    assert "pip install nasbert[onnx]" in one_sentence_error(capsys)
    assert main(["latency", "predict", ARCH, "--lut", str(int8_file)]) == 0  # predicting needs no runtime
    timer, unmeasured = measurer(ort_tables["int8"], measure=3)
    assert timer is None and "pip install nasbert[onnx]" in unmeasured
    with pytest.raises(UserError, match=r"pip install nasbert\[onnx\]"):
        RUNTIMES["onnxruntime"].check("int8", "cpu")
