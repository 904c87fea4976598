"""Checkpoints hold no pickle: objects round-trip exactly through JSON + safetensors, a pickled or tampered
checkpoint is refused without running it, and an older run converts with `nasbert convert-checkpoint`."""

from __future__ import annotations

import builtins
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.cli import main
from nasbert.common.checkpoint import load_checkpoint, load_object, newest_checkpoint, save_checkpoint, save_object


class PlantedCode:
    """A pickle that, when loaded, opens (creates) `marker`: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_objects_round_trip_exactly_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
           "masker": {"generator": torch.Generator().manual_seed(3).get_state()}, "cuda": None}
    odd = {"bf16": torch.arange(5, dtype=torch.bfloat16), "scalar": torch.tensor(7), "int_keys": {0: "a", 5: (1, 2)},
           "floats": [float("nan"), float("inf"), -float("inf"), 0.1], "np_scalar": np.float32(1.5),
           "tag": {"$type": "not a tag"}, "empty": torch.zeros(0, 3)}
    objects = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng-rank0": rng, "odd": odd}
    path = save_checkpoint(tmp_path, 1, model.state_dict(), objects, {"step": 1})
    for file in path.iterdir():  # JSON or safetensors, nothing else
        assert file.suffix in (".json", ".safetensors"), file
        json.loads(file.read_text()) if file.suffix == ".json" else load_file(str(file))
    weights, back, state = load_checkpoint(path, list(objects))
    assert state == {"step": 1} and torch.equal(weights["weight"], model.weight)

    assert back["optimizer"]["param_groups"] == optimizer.state_dict()["param_groups"]  # tuples (betas) kept
    for key, saved in optimizer.state_dict()["state"].items():  # int keys kept
        got = back["optimizer"]["state"][key]
        assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in saved.items()}
        assert all(torch.equal(got[k], v) for k, v in saved.items())
    assert back["scheduler"] == scheduler.state_dict()

    got = back["rng-rank0"]
    assert torch.equal(got["torch"], rng["torch"]) and got["python"] == rng["python"] and got["cuda"] is None
    assert got["numpy"][0] == rng["numpy"][0] and got["numpy"][1].dtype == np.uint32
    assert np.array_equal(got["numpy"][1], rng["numpy"][1]) and got["numpy"][2:] == rng["numpy"][2:]
    np.random.set_state(got["numpy"])
    random.setstate(got["python"])
    torch.set_rng_state(got["torch"])
    draws = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    assert draws == (np.random.rand(), random.random(), torch.rand(1).item())

    got = back["odd"]
    assert got["bf16"].dtype == torch.bfloat16 and torch.equal(got["bf16"], odd["bf16"])
    assert got["scalar"].shape == () and got["int_keys"] == {0: "a", 5: (1, 2)} and got["tag"] == odd["tag"]
    assert np.isnan(got["floats"][0]) and got["floats"][1:] == odd["floats"][1:]
    assert type(got["np_scalar"]) is np.float32 and got["np_scalar"] == 1.5 and got["empty"].shape == (0, 3)


def test_an_object_that_needs_pickle_is_refused_when_saved(tmp_path):
    with pytest.raises(TypeError, match="cannot hold a function"):
        save_object(tmp_path, "schedule", {"lr_lambda": lambda step: 1.0})
    with pytest.raises(TypeError, match="dtype object"):
        save_object(tmp_path, "objects", np.array([object()]))


@pytest.mark.parametrize("tamper", ["json", "safetensors"])
def test_a_tampered_object_file_is_corrupt_and_runs_nothing(tmp_path, tamper):
    marker = tmp_path / "marker"
    path = save_checkpoint(tmp_path, 1, {"w": torch.zeros(1)}, {"optimizer": {"x": torch.ones(2)}}, {"step": 1})
    (path / f"optimizer.{tamper}").write_bytes(pickle.dumps(PlantedCode(marker)))
    with pytest.raises(Exception, match="is corrupt") as error:
        load_checkpoint(path, ["optimizer"])
    assert type(error.value).__name__ == "UserError" and not marker.exists()


# ---- through the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"teacher": str(make_tiny_teacher(root / "teacher")), "corpus": str(make_corpus(root / "corpus.txt", 200))}


def _train(assets, output: Path, max_steps: int, *extra: str) -> int:
    return main(["train-supernet", "--teacher", assets["teacher"], "--train-file", assets["corpus"], "--output",
                 str(output), "--seq-len", "32", "--batch-size", "4", "--widths", "16", "32", "--warmup-steps", "2",
                 "--eval-every", "1000", "--max-steps", str(max_steps), "--save-every", "2", *extra])


@pytest.fixture
def stopped(assets, tmp_path) -> tuple[Path, dict[int, list[float]]]:
    """An 8-step run cut back to its checkpoint at step 4, and the losses it had uninterrupted (runs cannot
    move, so one per test)."""
    run = tmp_path / "run"
    assert _train(assets, run, 8, "--keep-checkpoints", "4") == 0
    for step in (6, 8):
        shutil.rmtree(run / f"checkpoints/step-{step}")
    return run, _losses(run)


def _losses(run: Path) -> dict[int, list[float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["train_loss_block"] for row in rows if "train_loss_block" in row}


def _as_older_version(run: Path) -> None:
    """Rewrite every checkpoint object as the `NAME.pt` pickle older nasbert versions wrote."""
    for checkpoint in (run / "checkpoints").iterdir():
        for file in checkpoint.glob("*.json"):
            if file.name != "state.json":
                torch.save(load_object(checkpoint, file.stem), checkpoint / f"{file.stem}.pt")
                file.unlink()
                file.with_suffix(".safetensors").unlink(missing_ok=True)


def error_sentence(capsys) -> str:
    """The one error line on stderr (progress bars of model loading aside); no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nasbert ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_pickled_optimizer_file_is_refused_on_resume_without_running_it(assets, stopped, tmp_path, capsys):
    run, _ = stopped
    checkpoint = newest_checkpoint(run)
    marker = tmp_path / "marker"
    for name in ("optimizer.json", "optimizer.safetensors"):
        (checkpoint / name).unlink()
    torch.save(PlantedCode(marker), checkpoint / "optimizer.pt")
    capsys.readouterr()
    assert _train(assets, run, 8, "--resume") == 2
    err = error_sentence(capsys)
    assert "can run code" in err and "nasbert convert-checkpoint" in err, err
    assert not marker.exists()


def test_an_older_run_converts_deliberately_and_resumes_exactly(assets, stopped, capsys):
    run, expected = stopped
    _as_older_version(run)
    before = _snapshot(run)
    capsys.readouterr()
    assert _train(assets, run, 8, "--resume") == 2
    assert f"nasbert convert-checkpoint {run}`" in error_sentence(capsys)
    assert _snapshot(run) == before  # refused before anything was written

    assert main(["convert-checkpoint", str(run)]) == 0
    assert "converted" in capsys.readouterr().out
    assert not list(run.rglob("*.pt"))
    assert main(["convert-checkpoint", str(newest_checkpoint(run))]) == 0
    assert "nothing to convert" in capsys.readouterr().out

    assert _train(assets, run, 8, "--resume") == 0
    resumed = _losses(run)  # steps 5-8 logged twice: the resumed ones last
    assert [resumed[s] for s in range(5, 9)] == [expected[s] for s in range(5, 9)]


def test_convert_checkpoint_refuses_a_folder_without_checkpoints(tmp_path, capsys):
    assert main(["convert-checkpoint", str(tmp_path)]) == 2
    assert "neither a run folder" in error_sentence(capsys)
