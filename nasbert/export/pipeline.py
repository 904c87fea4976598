"""Stage 4, export: students from a run (an arch, or the winners of a search), inherited, refined, written as
Hugging Face folders ready for fine-tuning.

    students/NAME/  config.json (auto_map, the arch)  model.safetensors  configuration_nasbert.py
                    modeling_nasbert.py  tokenizer files  README.md (model card)  nasbert_export.json
                    [model.onnx  [model.int8.onnx]]   (--onnx [--int8]: the bare encoder, see export.serving)

Each folder is written to a temporary sibling and moved into place, so a failed export leaves nothing
half-written, and never into a folder that was already there (but one a killed export left, holding only its
lock). The export holds OUTPUT for the whole job: a second export to it is refused, naming the holder.
A refinement keeps its checkpoints in `OUTPUT.refine/`, so an interrupted export (Ctrl-C, SIGTERM: exit 130 /
143) resumes with `--resume`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nasbert.common.lock import other_entries
from nasbert.common.recipe import hold_folder
from nasbert.common.teacher import Teacher, check_seq_len
from nasbert.errors import UserError
from nasbert.export.config import ExportOptions
from nasbert.export.inherit import build_inherited_student, initial_adapters, teacher_layer_map, teacher_order
from nasbert.export.model_card import model_card
from nasbert.export.refine import refine
from nasbert.latency.interpolate import with_ffn_ratio, with_widths
from nasbert.latency.lut import Conditions, LatencyTable
from nasbert.modeling_nasbert import NasbertForMaskedLM, NasbertModel
from nasbert.registration import save_student
from nasbert.search.budget import parse_latency_ms
from nasbert.train_supernet.etd import importance_order, random_order
from nasbert.train_supernet.run import Run
from search_space import Arch, ArchError, SearchSpace


@dataclass
class ExportRequest:
    name: str
    arch: Arch
    search: dict = field(default_factory=dict)  # the search.json entry it came from, if any
    init: str | None = None  # overrides ExportOptions.init (e.g. to compare inits under one refinement)
    teacher_layers: list[int] | None = None  # overrides ExportOptions.teacher_layers (init teacher-layers)
    ffn_ratio: int | None = None  # overrides ExportOptions.ffn_ratio (a narrower FFN, students from the teacher)
    baseline: dict | None = None  # a `nasbert baselines` member's family and budget, so `compare` can name it


FFN_PRUNABLE = ("etd-impt", "etd-rand", "scratch")  # inits whose FFN may be narrower than the space's

# A budget name as search writes it (BudgetResult.name): "5ms", "0.5ms-10M", "10M"; numbers as Python's :g.
_NUMBER = r"\d+(?:\.\d+)?(?:e[+-]\d+)?"
BUDGET_NAME = re.compile(rf"{_NUMBER}ms(?:-{_NUMBER}M)?|{_NUMBER}M")


def requests_from_search(path: str, budget: str | None, rank: int, space: SearchSpace | None = None
                         ) -> list[ExportRequest]:
    """The rank-th candidate (1 = the winner) of one budget, or of every budget, of a search.json.

    The file is data, never paths: every budget name must be a number with a unit (it becomes a folder name),
    names must differ, and with `space` (the run's) every `winner` and `top_k` arch must be in it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"search results {path} do not exist; run `nasbert search` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path} is not a nasbert search.json") from None
    budgets = data.get("budgets") if isinstance(data, dict) else None
    if not isinstance(budgets, list) or not all(isinstance(b, dict) and isinstance(b.get("top_k"), list)
                                                for b in budgets):
        raise UserError(f"{path} is not a nasbert search.json")
    if space is not None and isinstance(data.get("space"), dict) and data["space"] != space.to_json():
        raise UserError(f"{path} was searched in another space than the run's; export from the run it was made for")
    names = set()
    for entry in budgets:
        name = entry.get("name")
        if not isinstance(name, str) or not BUDGET_NAME.fullmatch(name):
            raise UserError(f"{path} has a budget named {name!r}, which is not a budget with a unit (such as 5ms or "
                            f"10M); a budget name becomes a folder name, so search.json must not be hand-edited")
        if name in names:
            raise UserError(f"{path} has the budget {name} twice; export one with --budget or search again")
        names.add(name)
        if space is not None:
            for where, candidate in [("winner", entry.get("winner"))] + [
                    (f"top_k[{i}]", c) for i, c in enumerate(entry["top_k"])]:
                if where == "winner" and candidate is None:
                    continue
                arch = candidate.get("arch") if isinstance(candidate, dict) else None
                try:
                    space.validate(arch if isinstance(arch, str) else "")
                except ArchError as error:
                    raise UserError(f"{path} budget {name} {where} holds {arch!r}, not an arch of the run's "
                                    f"space ({error})") from None
    if budget is not None:
        wanted = parse_latency_ms(budget)
        budgets = [b for b in budgets if isinstance(b.get("latency_budget_ms"), (int, float))
                   and abs(b["latency_budget_ms"] - wanted) < 1e-9]
        if not budgets:
            raise UserError(f"{path} has no budget of {budget}")
    weights = data.get("block_weights")
    requests = []
    for entry in budgets:
        if not 1 <= rank <= len(entry["top_k"]):
            raise UserError(f"--rank {rank} is out of range: budget {entry['name']} has {len(entry['top_k'])} "
                            f"candidates")
        chosen = entry["top_k"][rank - 1]
        if not isinstance(chosen, dict) or not isinstance(chosen.get("arch"), str):
            raise UserError(f"{path} budget {entry['name']} has no arch at rank {rank}")
        requests.append(ExportRequest(entry["name"], Arch.parse(chosen["arch"]),
                                      {**chosen, "budget": entry["name"], "rank": rank,
                                       "conditions": data.get("conditions"),
                                       "block_weights": weights.get("weights") if isinstance(weights, dict) else None}))
    return requests


def export_students(run: Run, requests: list[ExportRequest], output: str | Path, options: ExportOptions) -> list[Path]:
    """Build, refine and write one folder per request (OUTPUT itself for one, OUTPUT/NAME for several).

    OUTPUT is held (`hold_folder`) from the first check to the last write; under torchrun rank 0 holds and
    writes it, the other ranks only take part in the refinement."""
    output = Path(output)
    folders = [output] if len(requests) == 1 else [output / r.name for r in requests]
    main = int(os.environ.get("RANK", "0")) == 0
    if output.exists() and not output.is_dir():
        raise UserError(f"{output} is a file; choose another --output")
    check_onnx_options(options)
    with hold_folder(output, "export", enabled=main) as held:
        for folder in folders if main else []:
            ours = folder == output and held.created  # made now (or by a killed export: only its lock is left)
            if other_entries(folder) or (folder.exists() and not ours):
                raise UserError(f"{folder} already exists; choose another --output or remove it")
        return _export(run, requests, folders, options, write=main)


def check_onnx_options(options: ExportOptions) -> None:
    """--int8 goes with --onnx, and both need the onnx extra: refused in one sentence before any work."""
    if options.int8 and not options.onnx:
        raise UserError("--int8 quantizes the ONNX graph; add --onnx")
    if options.onnx:
        from nasbert.export.onnx import require_onnx

        require_onnx(options.int8)


def _export(run: Run, requests: list[ExportRequest], folders: list[Path], options: ExportOptions,
            write: bool) -> list[Path]:
    spaces = student_spaces(run.space, requests, options)
    lut = LatencyTable.load(options.lut) if options.lut else None
    if lut is not None:
        lut.check_space(run.space)
        profiled = lut.space.widths  # widths off the grid between them are priced on the line between neighbours
        lut = with_widths(lut, {w for s in spaces.values() for w in s.widths if profiled[0] < w < profiled[-1]})
    teacher = run.load_teacher(with_mlm_head=True)
    requests = [_with_teacher_layers(request, options, teacher) for request in requests]
    if options.refine is not None:
        check_seq_len(teacher, options.refine.seq_len, "--refine-seq-len")
    e = options.embedding_size or run.space.hidden_size
    inits = {request.init or options.init for request in requests}
    orders = {}
    if "etd-rand" in inits:
        orders["etd-rand"] = random_order(teacher, run.config.seed)
    if inits & {"etd-impt", "hybrid"} or ("supernet" in inits and e != run.space.hidden_size):
        ids = run.dev_ids[: options.importance_batches * 8].to(run.device)
        orders["etd-impt"] = importance_order(teacher, list(ids.split(8)), teacher.tokenizer.mask_token_id,
                                              run.config.seed)
    orders["supernet"] = orders.get("etd-impt")  # for a reduced embedding size
    orders["hybrid"] = orders.get("etd-impt")
    if "teacher-layers" in inits:
        orders["teacher-layers"] = teacher_order(teacher)
    supernet = run.supernet if inits & {"supernet", "hybrid"} else None
    torch.manual_seed(options.seed)
    students, adapters = {}, {}
    for request in requests:
        init = request.init or options.init
        order = orders.get(init)
        space = spaces[request.name]
        students[request.name] = build_inherited_student(init, space, request.arch, teacher, supernet=supernet,
                                                         order=order, teacher_mlm_head=teacher.mlm_head,
                                                         embedding_size=options.embedding_size,
                                                         teacher_layers=request.teacher_layers)
        adapters[request.name] = initial_adapters(init, space, request.arch, supernet, order)
    refined = None
    if options.refine is not None:
        refined = refine(options.refine, teacher, students, adapters)
    if not write:
        return folders
    texts = None
    if options.int8:  # real text for the INT8 deviation: the refinement corpus, else fixed sentences
        from nasbert.export.serving import FIXED_TEXTS, sample_texts

        texts = (sample_texts(options.refine.train_files, options.refine.text_column) if options.refine is not None
                 else list(FIXED_TEXTS))
    written = []
    for request, folder in zip(requests, folders):
        model = students[request.name].cpu().eval()
        card = _card_facts(run, spaces[request.name], request, options, refined, lut, model)
        threads = lut.conditions.threads if lut is not None else torch.get_num_threads()
        written.append(_write_folder(model, teacher.tokenizer, folder, card, options, texts, threads))
    return written


def student_spaces(space: SearchSpace, requests: list[ExportRequest], options: ExportOptions
                   ) -> dict[str, SearchSpace]:
    """Per request, the space its student is built in: the run's, widened by the widths of students that start
    from the teacher (or scratch) at a multiple of the head dim up to the teacher's width off the space's grid (the
    width family's refined grid: the teacher keeps any number of heads), and at a narrower FFN ratio where one is
    asked for (the teacher keeps any number of its neurons); each request checked (ArchError) against it. A
    supernet or hybrid student keeps the run's own space, whose widths and ratio alone the supernet trained, and a
    teacher-layers student the teacher's FFN, as it copies whole layers."""
    init = {r.name: r.init or options.init for r in requests}
    from_supernet = {name: i in ("supernet", "hybrid") for name, i in init.items()}
    extra = {b.width for r in requests if not from_supernet[r.name] for b in r.arch
             if b.width % space.head_dim == 0 and 0 < b.width <= space.hidden_size}
    widened = space.with_widths(extra)
    spaces = {}
    for request in requests:
        own = space if from_supernet[request.name] else widened
        own.validate(request.arch)
        ratio = request.ffn_ratio if request.ffn_ratio is not None else options.ffn_ratio
        if ratio is not None and ratio != space.ffn_ratio:
            if init[request.name] not in FFN_PRUNABLE:
                raise UserError(f"a narrower FFN (--ffn-ratio {ratio}) is pruned from the teacher's neurons: use "
                                f"--init {' or '.join(FFN_PRUNABLE)}, not {init[request.name]}")
            if not 0 < ratio < space.ffn_ratio:
                raise UserError(f"--ffn-ratio must be from 1 to {space.ffn_ratio - 1} (below the space's "
                                f"{space.ffn_ratio}), got {ratio}")
            own = own.with_ffn_ratio(ratio)
        spaces[request.name] = own
    return spaces


def _card_facts(run: Run, space: SearchSpace, request: ExportRequest, options: ExportOptions, refined,
                lut: LatencyTable | None, model: NasbertForMaskedLM) -> dict:
    facts = {
        "name": request.name, "arch": str(request.arch), "teacher": run.config.teacher,
        "supernet_run": str(run.path), "supernet_data": run.config.train_files, "init": request.init or options.init,
        "embedding_size": model.config.embedding_size,
        "params": sum(p.numel() for p in model.nasbert.parameters()),
        "params_encoder": space.params(request.arch) if model.config.embedding_size == space.embedding_dim else None,
        "flops": space.flops(request.arch), "search": request.search or None,
        "refine": None,
    }
    if request.teacher_layers is not None:
        facts["teacher_layers"] = request.teacher_layers
    if request.baseline is not None:
        facts["baseline"] = request.baseline
    if space.ffn_ratio != run.space.ffn_ratio:
        facts["ffn_ratio"] = space.ffn_ratio
    if refined is not None:
        last = _last_losses(refined.run_dir, request.name)
        facts["refine"] = {"steps": refined.config.steps, "data": refined.config.train_files,
                           "losses": refined.config.losses, "kl_lambda": refined.config.kl_lambda,
                           "final_losses": last, "run": str(refined.run_dir),
                           "notes": [n for n in refined.notes if not any(f"{o} " in n for o in refined.names
                                                                         if o != request.name)]}
    if lut is not None:  # None for a width outside the table's range: such a student is only measured
        priced = with_ffn_ratio(lut, space.ffn_ratio)  # a narrower FFN: its entries scaled by their FLOPs
        facts["predicted_latency_ms"] = priced.predict_ms(request.arch) if _priced_widths(lut, request.arch) else None
        facts["latency_conditions"] = lut.conditions.to_json()
    elif request.search.get("predicted_latency_ms") is not None:
        facts["predicted_latency_ms"] = request.search["predicted_latency_ms"]
        facts["latency_conditions"] = request.search.get("conditions")
    if options.measure:
        from nasbert.latency.measure import gauge_reference_ms, measure_model_ms

        conditions = lut.conditions if lut is not None else Conditions.current("cpu", None, 1, 128, "float32")
        runtime = getattr(conditions, "runtime", "torch")  # a table timed in another runtime is measured there
        served = {} if runtime == "torch" else {"runtime": runtime, "precision": conditions.precision}
        facts["measured_latency_ms"] = measure_model_ms(_bare_encoder(model), conditions.batch_size,
                                                        conditions.seq_len, conditions.threads, "cpu",
                                                        gauge_reference_ms=gauge_reference_ms(lut), **served)
        facts["measured_conditions"] = conditions.to_json()
    return facts


def _priced_widths(lut: LatencyTable, arch: Arch) -> bool:
    return all(b.width in lut.space.widths for b in arch)


def _bare_encoder(model: NasbertForMaskedLM) -> NasbertModel:
    """The student without its MLM head (what a task fine-tunes, what latency and the ONNX graphs are of)."""
    bare = NasbertModel(model.config, add_pooling_layer=False)
    bare.load_state_dict(model.nasbert.state_dict(), strict=False)
    return bare.eval()


def _with_teacher_layers(request: ExportRequest, options: ExportOptions, teacher: Teacher) -> ExportRequest:
    """A teacher-layers request with the teacher layers it keeps spelled out (checked; for the card)."""
    given = request.teacher_layers if request.teacher_layers is not None else options.teacher_layers
    if (request.init or options.init) != "teacher-layers":
        if given is not None:
            raise UserError("--teacher-layers goes with --init teacher-layers")
        return request
    layer_map = teacher_layer_map(request.arch, teacher.layers_per_block, given)
    return replace(request, teacher_layers=[t for block in layer_map for t in block])


def _last_losses(run_dir: Path, name: str) -> dict | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows[-1]["losses"].get(name) if rows else None


def _write_folder(model: NasbertForMaskedLM, tokenizer, folder: Path, facts: dict, options: ExportOptions,
                  texts: list[str] | None, threads: int) -> Path:
    """Write the student to a new temporary sibling of `folder` (never one that exists), then move it in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        save_student(model, tmp, tokenizer)
        if options.onnx:
            from nasbert.export.serving import serving_facts

            facts.update(serving_facts(_bare_encoder(model), tmp, tokenizer, options.int8, texts,
                                       threads if options.measure else None))
        (tmp / "README.md").write_text(model_card(facts))
        (tmp / "nasbert_export.json").write_text(json.dumps(facts, indent=1, default=str))
        _move_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _move_in(tmp: Path, folder: Path) -> None:
    """Rename `tmp` to `folder`; if `folder` is there (OUTPUT, holding only this export's lock), move tmp's
    entries into it, config.json last, so a folder with a config.json is complete."""
    if not folder.exists():
        tmp.rename(folder)
        return
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == "config.json"):
        entry.rename(folder / entry.name)
    tmp.rmdir()


def export_facts(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "nasbert_export.json").read_text())
