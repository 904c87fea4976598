"""The latency table: contents, predictor, units and conditions, calibration round trip, the command line."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace

import pytest
import torch

from nasbert.cli import main
from nasbert.latency import (
    LatencyTable,
    LatencyTableError,
    accuracy,
    fit_calibration,
    machine,
    measure_model_ms,
    profile_space,
    sample_archs,
)
from nasbert.latency.lut import Calibration, Entry, layer_count, op_family
from nasbert.latency.measure import SpeedGauge, UsualSpeed, at_usual_speed, gauge_model
from nasbert.registration import save_student
from nasbert.student import build_student
from search_space import SearchSpace

FAST = ["--min-run-time", "0.01", "--rounds", "2", "--no-progress"]
calibrate_module = importlib.import_module("nasbert.latency.calibrate")  # the package exports a function of this name


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.tiny()


@pytest.fixture(scope="module")
def table(space) -> LatencyTable:
    return profile_space(space, threads=1, batch_size=1, seq_len=16, min_run_time_s=0.01, rounds=2, progress=False)


@pytest.fixture
def lut_file(table, tmp_path):
    path = tmp_path / "lut.json"
    replace(table, calibration=None, validation=None).save(path)
    return path


@pytest.fixture
def space_file(space, tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space.to_json()))
    return path


def one_sentence_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ---- the table ------------------------------------------------------------------------------------------


def test_table_holds_every_op_width_and_nothing_else(space, table):
    assert set(table.layers) == set(space.ops)
    for op in space.ops:
        assert set(table.layers[op]) == set(space.widths)
    e, h, widths = space.embedding_dim, space.hidden_size, space.widths
    wanted = {(e, w) for w in widths} | {(a, b) for a in widths for b in widths} | {(w, h) for w in widths}
    assert set(table.projections) == wanted
    assert set(table.heads) == {"pooler", "mlm", "classifier", "token_classifier", "qa"}
    assert all(entry.median_ms > 0 and entry.iqr_ms >= 0 for entry in table.entries().values())
    cond = table.conditions
    assert (cond.device, cond.threads, cond.batch_size, cond.seq_len, cond.dtype) == ("cpu", 1, 1, 16, "float32")
    assert cond.torch_version and cond.device_name and cond.date
    assert table.profile["gauge_reference_ms"] > 0 and table.profile["rounds_count"] == 2
    assert table.profile["timings_count"] == 2 * len(table.entries())


def test_profile_restores_the_thread_count():
    before = torch.get_num_threads()
    other = before - 1 if before > 1 else 2  # fewer threads where it can (more would oversubscribe the cores)
    one_width = SearchSpace.tiny(widths=(16,), kernels=(3,))  # 7 entries: the thread count is what is checked
    profile_space(one_width, threads=other, seq_len=8, min_run_time_s=0.001, rounds=1, heads=(), progress=False)
    assert torch.get_num_threads() == before


def test_prediction_is_the_sum_of_the_arch_entries(space, table):
    arch = space.validate("32:M,S5,I,I/16:F,F,S3,M")
    expected = (table.embeddings.median_ms
                + table.projections[(32, 32)].median_ms  # E -> 32
                + table.layers["M"][32].median_ms + table.layers["S5"][32].median_ms
                + table.projections[(32, 16)].median_ms
                + 2 * table.layers["F"][16].median_ms + table.layers["S3"][16].median_ms
                + table.layers["M"][16].median_ms
                + table.projections[(16, 32)].median_ms)  # 16 -> H
    assert table.predict_ms(arch) == pytest.approx(expected, rel=1e-12)
    with_pooler = table.predict_ms(arch, heads=("pooler",))
    assert with_pooler == pytest.approx(expected + table.heads["pooler"].median_ms, rel=1e-12)
    assert sum(table.components_ms(arch, ("pooler",)).values()) == pytest.approx(with_pooler, rel=1e-12)


def test_missing_entries_are_refused(table):
    with pytest.raises(LatencyTableError, match="no entry for op F at width 64"):
        table.predict_ms("64:F/16:M")
    with pytest.raises(LatencyTableError, match="hidden_size 32, not 48"):
        table.check_space(SearchSpace.tiny(hidden_size=48))


def test_file_round_trips(table, lut_file):
    loaded = LatencyTable.load(lut_file)
    assert loaded.conditions == table.conditions and loaded.space == table.space
    assert loaded.entries().keys() == table.entries().keys()
    arch = "16:S3,M,F,I/32:M,M,M,M"
    assert loaded.predict_ms(arch) == pytest.approx(table.predict_ms(arch, calibrated=False), rel=1e-5)


# ---- units and conditions -------------------------------------------------------------------------------


def _edit(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("units"), "does not say its units"),
    (lambda d: d.update(units={"time": "s"}), "time unit 's'"),
    (lambda d: d["layers"]["M"]["16"].update(median=d["layers"]["M"]["16"].pop("median_ms")),
     "number without a unit at layers.M.16.median"),
    (lambda d: d["layers"]["M"]["16"].update(spread=0.1), "number without a unit at layers.M.16.spread"),
    (lambda d: d["embeddings"].update(median_s=d["embeddings"].pop("median_ms")), "unit other than ms"),
    (lambda d: d.update(total=3.0), "number without a unit at total"),
    (lambda d: d["conditions"].pop("threads"), "does not record the condition"),
    (lambda d: d.update(format="something-else"), "not a nasbert latency table"),
])
def test_unitless_or_foreign_files_are_refused(lut_file, edit, message):
    _edit(lut_file, edit)
    with pytest.raises(LatencyTableError, match=message):
        LatencyTable.load(lut_file)


def test_other_conditions_are_refused(table):
    cond = table.conditions
    table.require(replace(cond, date="another day"))  # the date is recorded, not compared
    for change in (dict(threads=cond.threads + 1), dict(batch_size=8), dict(seq_len=64), dict(dtype="bfloat16"),
                   dict(device="cuda"), dict(device_name="another CPU"), dict(torch_version="1.0.0")):
        with pytest.raises(LatencyTableError, match="other conditions"):
            table.require(replace(cond, **change))
        with pytest.raises(LatencyTableError, match="other conditions"):
            table.predict_ms("16:M,I,I,I/16:F,I,I,I", conditions=replace(cond, **change))
    assert table.predict_ms("16:M,I,I,I/16:F,I,I,I", conditions=cond) > 0


# ---- calibration ----------------------------------------------------------------------------------------


def test_calibration_recovers_a_known_correction_and_round_trips(space, table, lut_file):
    # layer times growing with width, as in a real space: at widths 16 and 32 a layer's time is nearly all fixed
    # cost, where a family's factor and the per-layer term could not be told apart
    wider = {op: {w: replace(e, median_ms=e.median_ms * (w / 16) ** 2) for w, e in by_width.items()}
             for op, by_width in table.layers.items()}
    table = replace(table, layers=wider, calibration=None, validation=None)
    table.save(lut_file)
    archs = sample_archs(space, 40, seed=1)
    truth = {"projection": 1.5, "M": 1.2, "F": 0.9, "S": 1.1}
    measured = []
    for arch in archs:
        parts = table.components_ms(arch, ("pooler",))
        measured.append(parts["embeddings"] + parts["heads"] + 0.05 + 0.02 * layer_count(arch)
                        + sum(truth[f] * parts[f] for f in table.families))
    cal = fit_calibration(table, archs, measured, ("pooler",), seed=1)
    assert cal.fit["fit_mape_percent"] < 0.5
    # the projections' sum barely varies in the tiny space (the constant can absorb it); the layers' does
    assert {f: cal.family_factor[f] for f in "MFS"} == pytest.approx({f: truth[f] for f in "MFS"}, abs=0.1)
    assert cal.layer_ms == pytest.approx(0.02, abs=0.01)
    loaded = LatencyTable.load(lut_file)
    loaded.calibration = cal
    loaded.save(lut_file)
    again = LatencyTable.load(lut_file)
    assert again.calibration.to_json() == loaded.calibration.to_json()
    for arch, y in zip(archs, measured):
        assert again.predict_ms(arch, ("pooler",)) == pytest.approx(y, rel=0.01)  # calibrated by default
        # the file keeps each entry to 1e-6 ms, so a sum of a few rounded entries may move by some 1e-6 ms
        assert again.predict_ms(arch, calibrated=False) == pytest.approx(table.predict_ms(arch), rel=1e-5, abs=1e-5)
    with pytest.raises(LatencyTableError, match="not calibrated"):
        LatencyTable.from_json(table.to_json()).predict_ms(archs[0], calibrated=True)


def test_a_fit_never_prices_a_layer_below_zero_and_a_table_that_does_is_refused(space, table, tmp_path):
    # measurements whose best fit has a per-layer term more negative than the cheapest layer (a busy machine, few
    # samples): the fit holds the term at 0 instead of pricing that layer below zero
    table = replace(table, calibration=None, validation=None)
    cheapest = min(e.median_ms for by_width in table.layers.values() for e in by_width.values())
    archs = sample_archs(space, 12, seed=2)
    measured = []
    for arch in archs:
        parts = table.components_ms(arch, ("pooler",))
        measured.append(sum(parts.values()) + 20 * cheapest - 3 * cheapest * layer_count(arch))
    free = Calibration(0.0, {f: 1.0 for f in table.families}, layer_ms=-3 * cheapest)
    assert free.negative_layers(table.layers)  # the fit this data asks for
    cal = fit_calibration(table, archs, measured, ("pooler",), seed=2)
    assert cal.layer_ms >= 0 and not cal.negative_layers(table.layers)
    replace(table, calibration=free).save(tmp_path / "lut.json")
    with pytest.raises(LatencyTableError, match="prices layers below zero .* calibrate it again"):
        LatencyTable.load(tmp_path / "lut.json")


def test_a_table_in_seconds_is_refused_even_when_it_was_profiled_on_a_loaded_machine(lut_file):
    # a tiny space's entries timed slowly (a loaded machine) put its largest layer at 2 ms, so its copy in
    # seconds has entries over the 1 us floor; the speed gauge, a fixed student of the default space, still gives
    # it away (it failed once in the suite under load before the gauge had a floor of its own)
    data = json.loads(lut_file.read_text())
    assert data["profile"]["gauge"].startswith("student ")
    slow = 2.0 / max(e["median_ms"] for by_width in data["layers"].values() for e in by_width.values())

    def loaded_then_seconds(node, key=""):
        if isinstance(node, dict):
            return {k: loaded_then_seconds(v, k if k.endswith("_ms") else key) for k, v in node.items()}
        if key.endswith("_ms") and isinstance(node, float):
            return node * slow / 1000 if key == "median_ms" else node / 1000
        return node

    seconds = loaded_then_seconds(data)
    largest = max(e["median_ms"] for by_width in seconds["layers"].values() for e in by_width.values())
    assert largest > 1e-3  # the entries' floor alone would let it through
    lut_file.write_text(json.dumps(seconds))
    with pytest.raises(LatencyTableError, match="speed gauge took .* not milliseconds"):
        LatencyTable.load(lut_file)


def test_search_and_shrinking_price_a_student_as_the_calibrated_table_does(space, table, tmp_path):
    from nasbert.search.select import LatencyModel
    from nasbert.train_supernet.shrink import block_latency_function

    cal = Calibration(0.05, {"projection": 1.5, "M": 1.2, "F": 0.9, "S": 1.1}, layer_ms=0.02)
    calibrated = replace(table, calibration=cal, validation=None)
    calibrated.save(tmp_path / "lut.json")
    model, shrink_block_ms = LatencyModel(calibrated), block_latency_function(str(tmp_path / "lut.json"), space)
    for arch in sample_archs(space, 10, seed=4):
        summed = (model.constant_ms + sum(model.block_ms(block) for block in arch)
                  + sum(model.projection_ms(i, o) for i, o in space.projection_widths(arch)))
        assert summed == pytest.approx(calibrated.predict_ms(arch))
        without = replace(calibrated, calibration=replace(cal, layer_ms=0.0)).predict_ms(arch)
        assert calibrated.predict_ms(arch) - without == pytest.approx(0.02 * layer_count(arch))
        for block in arch:
            assert shrink_block_ms(block) == pytest.approx(model.block_ms(block), rel=1e-4)


def test_samples_are_seeded_and_disjoint(space):
    first = sample_archs(space, 10, seed=3)
    assert first == sample_archs(space, 10, seed=3) and len(set(first)) == 10
    other = sample_archs(space, 10, seed=3, exclude=[str(a) for a in first])
    assert not set(map(str, first)) & set(map(str, other))


def test_samples_spread_from_the_smallest_students_to_the_largest():
    # a draw uniform over block candidates is nearly always deep; the calibration must see small students too
    space = SearchSpace.tiny(widths=(16, 24, 32), head_dim=8)
    archs = sample_archs(space, 12, seed=0)
    depths = [[sum(op != "I" for op in block.ops) for block in arch] for arch in archs]
    widths = [[block.width for block in arch] for arch in archs]
    assert depths[0] == [1, 1] and widths[0] == [16, 16]  # level 1/24: one layer per block, the narrowest width
    assert min(depths[-1]) >= space.layers_per_block - 1 and min(widths[-1]) >= 24  # level 23/24: deep and wide
    assert sum(map(sum, depths[:6])) < sum(map(sum, depths[6:]))  # sizes grow with the level
    assert len(set(map(str, archs))) == 12


def test_accuracy_figures():
    figures = accuracy([11.0, 20.0, 27.0, 40.0], [10.0, 20.0, 30.0, 40.0])
    assert figures["mape_percent"] == pytest.approx(5.0)
    assert figures["max_abs_error_percent"] == pytest.approx(10.0)
    assert figures["within_10_percent_fraction"] == 1.0 and figures["kendall_tau"] == 1.0
    assert op_family("S7") == "S" and op_family("M") == "M"


# ---- measuring ------------------------------------------------------------------------------------------


def test_measure_model_ms_times_a_student_and_restores_threads(space):
    before = torch.get_num_threads()
    model = build_student(space, space.sample(0))
    latency_ms = measure_model_ms(model, batch_size=2, seq_len=16, threads=1, min_run_time_s=0.01)
    assert 0 < latency_ms < 1000 and torch.get_num_threads() == before
    assert not model.training


# ---- the command line -----------------------------------------------------------------------------------


def test_cli_profile_calibrate_validate_measure(space, space_file, tmp_path, capsys):
    lut = tmp_path / "lut.json"
    assert main(["latency", "profile", "--output", str(lut), "--space", str(space_file), "--threads", "1",
                 "--seq-len", "16", *FAST]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["latency", "calibrate", "--lut", str(lut), "--samples", "6", *FAST]) == 0
    assert "calibrated on 6 students" in capsys.readouterr().out
    plot = tmp_path / "plot.png"
    assert main(["latency", "validate", "--lut", str(lut), "--samples", "4", "--plot", str(plot), *FAST]) == 0
    out = capsys.readouterr().out
    assert "raw sum     MAPE" in out and "calibrated  MAPE" in out
    assert "Kendall tau" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = LatencyTable.load(lut)
    assert table.calibration is not None and len(table.calibration.archs) == 6
    assert table.validation["samples_count"] == 4 and table.validation["machine"]["timings_count"] >= 4 * 2
    assert {"raw", "calibrated"} <= set(table.validation)
    assert "scaled to the usual speed" in out
    assert not set(table.validation["archs"]) & set(table.calibration.archs)
    student = save_student(build_student(space, space.sample(5)), tmp_path / "student")
    assert main(["latency", "measure", str(student), "--lut", str(lut), *FAST]) == 0
    out = capsys.readouterr().out
    assert "ms median" in out and "predicted" in out and "speed gauge read" in out
    assert main(["latency", "predict", "16:M,F,I,I/32:S3,I,I,I", "--lut", str(lut)]) == 0
    assert "calibrated" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["profile", "--output", "{tmp}/lut.json", "--threads", "0"], "--threads must be positive"),
    (["profile", "--output", "{tmp}/new.json", "--space", "{space}", "--seq-len", "1000"],
     "longer than the space's max_position_embeddings"),
    (["profile", "--output", "{tmp}/new.json", "--device", "tpu"], "unknown device"),
    (["profile", "--output", "{tmp}", "--space", "{space}"], "is a folder"),
    (["validate", "--lut", "{tmp}/missing.json"], "does not exist"),
    (["calibrate", "--lut", "{lut}", "--samples", "0"], "--samples must be positive"),
    (["measure", "{tmp}"], "not a student folder"),
    (["predict", "64:M,I,I,I/16:M,I,I,I", "--lut", "{lut}"], "not in the space's widths"),
])
def test_cli_bad_inputs_exit_2_with_one_sentence(argv, message, tmp_path, lut_file, space_file, capsys):
    argv = [a.format(tmp=tmp_path, lut=lut_file, space=space_file) for a in argv]
    assert main(["latency", *argv, *FAST[2:]] if argv[0] != "predict" else ["latency", *argv]) == 2
    err = one_sentence_error(capsys)
    assert message in err and err.startswith("nasbert latency: error:")


def test_cli_refuses_a_table_from_other_conditions(lut_file, capsys):
    _edit(lut_file, lambda d: d["conditions"].update(device_name="some other machine"))
    assert main(["latency", "validate", "--lut", str(lut_file), "--samples", "2", *FAST]) == 2
    assert "other conditions" in one_sentence_error(capsys)
    _edit(lut_file, lambda d: d["embeddings"].update(median_s=d["embeddings"].pop("median_ms")))
    assert main(["latency", "calibrate", "--lut", str(lut_file), *FAST]) == 2
    assert "unit other than ms" in one_sentence_error(capsys)


# ---- timings at the machine's usual speed ---------------------------------------------------------------


class _DriftingMachine:
    """A fake machine whose speed drifts: each gauge reading and timing advances a clock, and at clock c every
    workload (the gauge's and the items') takes `speed(c)` times its usual time."""

    def __init__(self, speed):
        self.clock, self.speed = 0, speed

    def read_ms(self) -> float:
        self.clock += 1
        return 0.10 * self.speed(self.clock)

    def time(self, true_ms: float) -> Entry:
        self.clock += 1
        return Entry(true_ms * self.speed(self.clock), 0.0, 10)


def test_timings_are_scaled_to_the_usual_speed():
    # Readings at odd clocks, timings at even ones: the second pass (clocks 9-17) runs 25 % faster, part of the
    # third 20 % slower. A timing whose two readings straddle a change is scaled wrongly (items 0, 2 and 3
    # once each); the median of its rounds is not.
    machine = _DriftingMachine(lambda c: 0.75 if 9 <= c < 18 else 1.2 if 19 <= c < 22 else 1.0)
    items = [10.0, 20.0, 30.0, 40.0]
    result = at_usual_speed(items, machine.time, rounds=3, gauge=machine, progress=False)
    assert [e.median_ms for e in result.entries] == pytest.approx(items)
    assert result.reference_ms == pytest.approx(0.10) and result.timings_count == 3 * len(items)
    assert result.speed_range == pytest.approx((0.75, 1.2))
    assert result.spreads[1] == pytest.approx(0.0) and min(result.spreads[i] for i in (0, 2, 3)) > 0


def test_timings_are_scaled_to_the_table_speed_not_this_runs():
    machine = _DriftingMachine(lambda c: 0.75)  # fast the whole run: only the table's reference tells
    result = at_usual_speed([10.0], machine.time, rounds=3, gauge=machine, reference_ms=0.10, progress=False)
    assert result.entries[0].median_ms == pytest.approx(10.0)
    unscaled = at_usual_speed([10.0], machine.time, rounds=3, gauge=machine, progress=False)
    assert unscaled.entries[0].median_ms == pytest.approx(7.5)  # without a reference this run's speed is usual


def test_the_gauge_is_the_same_workload_in_every_process():
    a = SpeedGauge(threads=1)
    assert SpeedGauge(threads=1).model is a.model  # built once per process: every timing reads the gauge
    first = a._run()
    gauge_model.cache_clear()  # a fresh build, as another process makes
    b = SpeedGauge(threads=1)
    assert b.model is not a.model and torch.equal(first, b._run()) and a.read_ms() > 0


# ---- a busy machine is refused --------------------------------------------------------------------------


@pytest.fixture
def strict(monkeypatch):
    """The default behaviour: timings from a busy machine are refused (the suite itself allows them)."""
    monkeypatch.delenv(machine.ALLOW_BUSY_ENV, raising=False)


def _busy_after(monkeypatch, quiet_readings: int, load: float = 8.0) -> None:
    """Fake the machine's load: idle for the first `quiet_readings` readings, then `load` cores' worth."""
    calls = iter(range(10**6))
    monkeypatch.setattr(machine, "runnable_elsewhere",
                        lambda own_threads=0: 0.0 if next(calls) < quiet_readings else load)


@pytest.mark.parametrize("quiet, message", [(0, "too busy to time a latency table"),
                                            (5, "got busy while timing a latency table")])
def test_profile_on_a_busy_machine_is_refused_and_writes_nothing(space_file, tmp_path, capsys, monkeypatch, strict,
                                                                 quiet, message):
    _busy_after(monkeypatch, quiet)
    lut = tmp_path / "lut.json"
    assert main(["latency", "profile", "--output", str(lut), "--space", str(space_file), "--threads", "1",
                 "--seq-len", "16", *FAST]) == 2
    err = one_sentence_error(capsys)
    assert message in err and "want 8.0 of its" in err and "NASBERT_ALLOW_BUSY=1" in err
    assert list(tmp_path.iterdir()) == [space_file]


def test_allow_busy_keeps_the_table_with_a_warning(space_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(machine.ALLOW_BUSY_ENV, "1")
    _busy_after(monkeypatch, 0)
    lut = tmp_path / "lut.json"
    assert main(["latency", "profile", "--output", str(lut), "--space", str(space_file), "--threads", "1",
                 "--seq-len", "16", *FAST]) == 0
    assert "warning: the machine is too busy" in capsys.readouterr().err and LatencyTable.load(lut)


def test_a_calibration_of_85x_is_refused_and_the_table_kept(lut_file, table, capsys, monkeypatch, strict):
    monkeypatch.setattr(machine, "runnable_elsewhere", lambda own_threads=0: 0.0)

    def timed_85x_slow(table, archs, *args, **kwargs):  # what a busy machine measured in the reported case
        entries = [Entry(85 * table.predict_ms(a, ("pooler",), calibrated=False), 0.0, 3) for a in archs]
        return UsualSpeed(entries, 0.1, 3 * len(archs), [0.0] * len(archs))

    monkeypatch.setattr(calibrate_module, "measure_students", timed_85x_slow)
    before = lut_file.read_bytes()
    assert main(["latency", "calibrate", "--lut", str(lut_file), "--samples", "8", *FAST]) == 2
    err = one_sentence_error(capsys)
    factors = [float(x) for x in re.findall(r" x(\d+\.\d+)", err)]
    assert "implausible factors" in err and "0.5-3.0x" in err and len(factors) == 4 and min(factors) > 50
    assert lut_file.read_bytes() == before


def test_rounds_that_disagree_or_a_slow_gauge_are_refused(strict):
    check = machine.MachineCheck(threads=1, cores=2)
    steady = UsualSpeed([Entry(1.0, 0.0, 1)], 0.10, 3, [0.2], gauge_median_ms=0.11)
    check.require_steady(steady, "a latency table")
    with pytest.raises(machine.MachineBusyError, match="disagree by 700 %"):
        check.require_steady(replace(steady, spreads=[7.0, 7.0, 0.1]), "a latency table")
    with pytest.raises(machine.MachineBusyError, match="ran 2.5x slower"):
        check.require_steady(replace(steady, gauge_median_ms=0.25), "a calibration")
    check.readings = [0.0, 2.0, 2.0]  # two other runnable threads on two cores leave none for ours
    with pytest.raises(machine.MachineBusyError, match="got busy while timing a calibration"):
        check.require_steady(steady, "a calibration")


def test_fewer_free_cores_than_threads_is_told(monkeypatch, capsys, strict):
    monkeypatch.setattr(machine, "runnable_elsewhere", lambda own_threads=0: 0.0)
    cores = machine.usable_cores()
    machine.MachineCheck.before(cores + 1, "cpu", "a latency table", interval_s=0)
    assert f"timing with {cores + 1} threads on {cores} usable core(s)" in capsys.readouterr().err
    monkeypatch.setattr(machine, "runnable_elsewhere", lambda own_threads=0: 0.3)
    machine.MachineCheck.before(cores, "cpu", "a latency table", interval_s=0)  # short of a core by 0.3: told
    assert f"{cores - 0.3:.1f} of {cores} cores were free for {cores} timing threads" in capsys.readouterr().err


def test_the_load_reading_does_not_count_this_process():
    before = machine.runnable_elsewhere()
    assert before is None or 0 <= before <= 4 * machine.usable_cores()
