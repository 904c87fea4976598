"""Layer maps as data: which teacher layer each student layer learns from, `--layer-map`.

A map is a list of (student layer, teacher layer) pairs, both 0-based: student layer s is the output of the
student's s-th layer (a NAS-BERT student's s-th *block*: its blocks may hold convolutions, so they map by block
boundary), teacher layer t the output of the teacher's t-th encoder layer (`hidden_states[t + 1]`). The one
text form, which round-trips exactly, is `s0:t2,s1:t5`. Named maps, for a student of M layers and a teacher
of L (k = L / M):

    uniform  every student layer s -> (s + 1) k - 1: TinyBERT's g(m) = m k, so the last layers meet; for a
             NAS-BERT student these are the teacher's block boundaries
    skip     uniform without the last student layer (BERT-PKD's PKD-Skip: a 6-layer student learns teacher
             layers 2, 4, .., 10 of 12, 1-based; the last layer is the logits' job)
    last     s -> L - M + s for s < M - 1 (PKD-Last: teacher layers 7 .. 11 of 12, 1-based)
    top      s -> L - M + s for every s (XtremeDistil's top-aligned hidden states, the last ones meeting)

Where k is not a whole number, uniform and skip round (s + 1) k to the nearest layer. A map may also be read
from a `nasbert layer-map-search` result (its `best` entry), where it must fit the same layer counts.

Pure Python: the command line parses maps before anything heavy loads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nasbert.errors import UserError

NAMED_MAPS = ("uniform", "skip", "last", "top")
_PAIR = re.compile(r"^s?(\d+):t?(\d+)$")

LayerMap = list[tuple[int, int]]


def parse_layer_map(text: str) -> LayerMap:
    """Pairs from `s0:t2,s1:t5` (the `s`/`t` optional, spaces ignored); a malformed pair is a UserError."""
    pairs = []
    for part in text.replace(" ", "").split(","):
        match = _PAIR.match(part)
        if not match:
            raise UserError(f"--layer-map {text!r}: {part!r} is not a pair like s0:t2 (student layer : teacher "
                            f"layer, 0-based); give pairs like 's0:t2,s1:t5' or one of {', '.join(NAMED_MAPS)}")
        pairs.append((int(match.group(1)), int(match.group(2))))
    return pairs


def format_layer_map(pairs: LayerMap) -> str:
    """The text form of a map: `s0:t2,s1:t5` (parse_layer_map reads it back to the same pairs)."""
    return ",".join(f"s{s}:t{t}" for s, t in pairs)


def named_layer_map(name: str, student_layers: int, teacher_layers: int) -> LayerMap:
    """The pairs of a named map for M student and L teacher layers (see the module docstring)."""
    m, n = student_layers, teacher_layers
    if n < m:
        raise UserError(f"--layer-map {name} needs a teacher at least as deep as the student; the teacher has {n} "
                        f"layers and the student {m}: give explicit pairs like 's0:t0,s1:t1'")
    if name in ("uniform", "skip"):
        pairs = [(s, max(0, min(n - 1, round((s + 1) * n / m) - 1))) for s in range(m)]
        return pairs if name == "uniform" else pairs[:-1]
    if name == "last":
        return [(s, n - m + s) for s in range(m - 1)]
    if name == "top":
        return [(s, n - m + s) for s in range(m)]
    raise ValueError(name)


def check_layer_map(pairs: LayerMap, student_layers: int, teacher_layers: int, spec: str) -> LayerMap:
    """Refuse a map that names a layer the models do not have, or maps a student layer twice (a UserError)."""
    if not pairs:
        raise UserError(f"--layer-map {spec} maps no layer for a {student_layers}-layer student; give pairs like "
                        "'s0:t1' or another map")
    if len(pairs) > student_layers:
        raise UserError(f"--layer-map {spec} has {len(pairs)} pairs but the student has only {student_layers} "
                        f"layers (s0..s{student_layers - 1}); map each student layer at most once")
    seen = set()
    for s, t in pairs:
        if s >= student_layers:
            raise UserError(f"--layer-map {spec}: student layer s{s} is out of range; the student has "
                            f"{student_layers} layers (s0..s{student_layers - 1})")
        if t >= teacher_layers:
            raise UserError(f"--layer-map {spec}: teacher layer t{t} is out of range; the teacher has "
                            f"{teacher_layers} layers (t0..t{teacher_layers - 1})")
        if s in seen:
            raise UserError(f"--layer-map {spec} maps student layer s{s} twice; map each student layer once")
        seen.add(s)
    return sorted(pairs)


def resolve_layer_map(spec: str, student_layers: int, teacher_layers: int) -> LayerMap:
    """The checked pairs of `spec`: a named map, explicit pairs, or a layer-map-search result file."""
    if spec in NAMED_MAPS:
        pairs = named_layer_map(spec, student_layers, teacher_layers)
    elif spec.endswith(".json") or Path(spec).is_dir():
        pairs = _searched_map(Path(spec), student_layers, teacher_layers)
    else:
        pairs = parse_layer_map(spec)
    return check_layer_map(pairs, student_layers, teacher_layers, spec)


def _searched_map(path: Path, student_layers: int, teacher_layers: int) -> LayerMap:
    """The best map of a `nasbert layer-map-search` output (its folder or its layer_map_search.json)."""
    file = path / "layer_map_search.json" if path.is_dir() else path
    try:
        result = json.loads(file.read_text())
        best, counts = result["best"]["layer_map"], (result["student_layers"], result["teacher_layers"])
    except FileNotFoundError:
        raise UserError(f"--layer-map {path}: no such file (give a layer_map_search.json, its folder, a named "
                        f"map or pairs like 's0:t2')") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"--layer-map {file} is not a `nasbert layer-map-search` result (no best layer_map)") from None
    if counts != (student_layers, teacher_layers):
        raise UserError(f"--layer-map {file} was searched for a {counts[0]}-layer student and a {counts[1]}-layer "
                        f"teacher, not {student_layers} and {teacher_layers}; search again for these models")
    return parse_layer_map(best)
