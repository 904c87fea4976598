"""`nasbert quickstart --output DIR`: the whole pipeline at toy scale, on CPU, with nothing downloaded.

    1. a generated corpus and sentiment task            DIR/data/
    2. a small BERT teacher trained briefly by MLM      DIR/teacher/
    3. train-supernet with progressive shrinking        DIR/run/
    4. latency profile of the space on this machine     DIR/lut.json
    5. search at two latency budgets                    DIR/search.json (+ search.png)
    6. export the winners with refinement               DIR/students/<budget>/
    7. a short fine-tune of one student                 DIR/finetuned/

Each stage is the same `nasbert` command a user runs (printed as it starts); a finished stage is skipped
when the quickstart is run again on the same DIR. The toy students run in about a millisecond, where timing
noise alone breaks the steady-machine check (`nasbert.latency.machine`: their rounds disagreed by 55-60 % on an
idle 2-core VM), so the quickstart keeps such timings with a warning (NASBERT_ALLOW_BUSY=1) unless told otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from nasbert.common.masking import Masker
from nasbert.errors import UserError
from nasbert.latency.machine import ALLOW_BUSY_ENV
from nasbert.quickstart import synthetic

# (normal, fast): the fast form is what CI runs
SCALE = {
    "corpus_lines": (4000, 800), "teacher_steps": (300, 40), "supernet_steps": (300, 40),
    "shrink_warmup": (100, 15), "shrink_every": (50, 10), "refine_steps": (100, 10), "finetune_epochs": (2, 1),
    "task_train": (2000, 300), "profile_time": (0.3, 0.03), "profile_rounds": (3, 1), "search_measure": (3, 1),
    "search_time": (0.3, 0.1),
}
SEARCH_TRIES = 3  # searches on a fresh profile each, before the quickstart gives up (see profile_and_search)


def _run(nasbert: Callable[[list[str]], int], stage: str, args: list[str]) -> None:
    print(f"\n== {stage}\n$ nasbert {shlex.join(args)}", flush=True)
    code = nasbert(args)
    if code != 0:
        raise UserError(f"quickstart stage '{stage}' failed (exit {code}); see the message above")


def train_teacher(folder: Path, corpus: Path, steps: int, seed: int = 0) -> Path:
    """A 4-layer, 64-wide BERT with an MLM head, trained briefly on the generated corpus."""
    if (folder / "config.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(synthetic.vocabulary()) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=4,
                                       num_attention_heads=4, intermediate_size=256, max_position_embeddings=64))
    lines = corpus.read_text().splitlines()
    masker = Masker(tokenizer, 0.15, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        rows = torch.randint(len(lines), (32,), generator=generator).tolist()
        batch = tokenizer([lines[i] for i in rows], padding="max_length", truncation=True, max_length=32,
                          return_tensors="pt")
        ids, labels = masker.with_labels(batch["input_ids"])
        labels[batch["attention_mask"] == 0] = -100
        loss = model(input_ids=ids, attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"teacher MLM step {step + 1}/{steps}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def quickstart(output: str | Path, run_command: Callable[[list[str]], int], fast: bool = False) -> dict:
    """run_command: `nasbert ARGS` in this process (nasbert.commands.base.run_command), returning its exit code."""
    with toy_timings_kept():
        return _quickstart(Path(output).resolve(), run_command, fast)


@contextmanager
def toy_timings_kept() -> Iterator[None]:
    """NASBERT_ALLOW_BUSY=1 while the quickstart runs, unless the user set it either way."""
    if ALLOW_BUSY_ENV in os.environ:
        yield
        return
    os.environ[ALLOW_BUSY_ENV] = "1"
    print(f"note: the toy students run in about a millisecond, where timing noise alone can exceed the steady-machine "
          f"check; their timings are kept with a warning ({ALLOW_BUSY_ENV}=1 for this run). Time real students on an "
          "idle machine.", flush=True)
    try:
        yield
    finally:
        del os.environ[ALLOW_BUSY_ENV]


def _quickstart(out: Path, run_command: Callable[[list[str]], int], fast: bool) -> dict:
    start = time.perf_counter()
    pick = {k: v[1] if fast else v[0] for k, v in SCALE.items()}
    corpus = out / "data/corpus.txt"
    if not corpus.exists():
        synthetic.write_corpus(corpus, pick["corpus_lines"])
        synthetic.write_task(out / "data/task", pick["task_train"], 400)
    print("== teacher: a small BERT trained by MLM on the generated corpus", flush=True)
    teacher = train_teacher(out / "teacher", corpus, pick["teacher_steps"])

    run = out / "run"
    if not (run / "block_losses.json").exists():
        _run(run_command, "train the supernet", [
            "train-supernet", "--teacher", str(teacher), "--train-file", str(corpus), "--output", str(run),
            "--num-blocks", "2", "--widths", "32", "64", "--seq-len", "32", "--batch-size", "32", "--lr", "2e-3",
            "--warmup-steps", "20", "--max-steps", str(pick["supernet_steps"]), "--init", "etd-impt",
            "--shrink", "--shrink-bins", "4", "--shrink-candidates", "60", "--shrink-keep", "4",
            "--shrink-warmup-steps", str(pick["shrink_warmup"]), "--shrink-every", str(pick["shrink_every"]),
            "--shrink-dev-batches", "2", "--eval-every", "100", "--save-every", "100"] + (
            ["--resume"] if (run / "config.json").exists() else []))

    lut, search = out / "lut.json", out / "search.json"
    profile_and_search(run_command, run, lut, search, pick)

    students = out / "students"
    if not students.exists():
        _run(run_command, "export the winners with refinement", [
            "export", str(run), "--search", str(search), "--init", "supernet", "--refine-steps",
            str(pick["refine_steps"]), "--train-file", str(corpus), "--refine-batch-size", "32",
            "--refine-seq-len", "32", "--lut", str(lut), "--output", str(students)] + (
            ["--resume"] if Path(str(students) + ".refine").exists() else []))
    folders = sorted(p for p in students.iterdir() if p.is_dir() and not p.name.startswith("."))

    finetuned = out / "finetuned"
    if not (finetuned / "eval_results.json").exists():
        _run(run_command, "fine-tune one student on the generated sentiment task", [
            "finetune", str(folders[0]), "--train-file", str(out / "data/task/train.tsv"), "--validation-file",
            str(out / "data/task/dev.tsv"), "--epochs", str(pick["finetune_epochs"]), "--lr", "1e-3",
            "--batch-size", "32", "--max-seq-len", "32", "--output", str(finetuned)])
    results = json.loads((finetuned / "eval_results.json").read_text())
    seconds = time.perf_counter() - start
    print(f"\nquickstart finished in {seconds:.0f} s. Students: {', '.join(str(f) for f in folders)}")
    print(f"fine-tuned {folders[0].name} on the generated task: {json.dumps(results)}")
    print("fine-tune a student on your own task with:\n"
          f"  nasbert finetune {folders[0]} --train-file train.tsv --validation-file dev.tsv --output ft")
    return {"students": folders, "finetuned": finetuned, "eval": results, "seconds": seconds}


def profile_and_search(run_command: Callable[[list[str]], int], run: Path, lut: Path, search: Path, pick: dict,
                       tries: int = SEARCH_TRIES) -> None:
    """Profile the space on this machine, then search at two budgets read off that table. A failed search is
    retried on a fresh profile, up to `tries` searches in all: the failure seen is no student measuring within a
    budget, where the machine ran slower than when it was profiled (a CI box running other tests beside this one)."""
    for attempt in range(1, tries + 1):
        if search.exists():
            return
        if not lut.exists():
            _run(run_command, "profile latency on this machine", [
                "latency", "profile", "--space", str(run), "--seq-len", "32", "--min-run-time",
                str(pick["profile_time"]), "--rounds", str(pick["profile_rounds"]), "--output", str(lut)])
        budgets = _two_budgets(run, lut)
        try:
            _run(run_command, "search at two latency budgets", [
                "search", str(run), "--latency-budget", *budgets, "--lut", str(lut), "--top-k", "10",
                "--recheck-batches", "2", "--measure", str(pick["search_measure"]),
                "--min-run-time", str(pick["search_time"]), "--rounds", str(pick["profile_rounds"]),
                "--output", str(search)])
        except UserError:
            if attempt == tries:
                raise
            print(f"quickstart: the search failed on the table profiled earlier; profiling this machine again and "
                  f"searching at budgets read off the new table (try {attempt + 1} of {tries})", flush=True)
            lut.unlink()


def _two_budgets(run: Path, lut: Path) -> list[str]:
    """Two latency budgets between the fastest and the slowest student the shrunk table holds."""
    from nasbert.latency.lut import LatencyTable
    from nasbert.search.select import LatencyModel, block_tables
    from nasbert.search.topk import StructureCosts, top_k
    from search_space import SearchSpace

    table = json.loads((run / "block_losses.json").read_text())
    space = SearchSpace.from_json(table["space"])
    latency = LatencyModel(LatencyTable.load(lut))
    _, tables = block_tables(space, table, latency)
    structure = StructureCosts.for_space(space, latency.projection_ms, latency.constant_ms)
    totals = [s.latency_ms for s in top_k(tables, structure, k=10**6)]
    low, high = min(totals), max(totals)
    return [f"{low + fraction * (high - low):.4f}ms" for fraction in (0.35, 0.8)]
