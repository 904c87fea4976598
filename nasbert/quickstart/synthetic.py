"""A generated language for the quickstart: a corpus with structure a small BERT can learn in seconds, a
sentiment task on it, and a WordPiece vocabulary. No network, no shared data."""

from __future__ import annotations

import random
from pathlib import Path

DETERMINERS = ["the", "a", "every", "some", "this", "that"]
NOUNS = ["dog", "cat", "bird", "child", "teacher", "farmer", "river", "garden", "city", "song", "story", "horse",
         "king", "queen", "ship", "forest"]
VERBS = ["sees", "likes", "finds", "follows", "paints", "visits", "hears", "remembers", "watches", "helps"]
POSITIVE = ["happy", "bright", "kind", "gentle", "brave", "lovely", "warm", "clever", "wonderful", "cheerful"]
NEGATIVE = ["sad", "dark", "cruel", "rude", "grim", "awful", "cold", "dull", "terrible", "gloomy"]
ADVERBS_POSITIVE = ["gladly", "warmly", "kindly"]
ADVERBS_NEGATIVE = ["sadly", "coldly", "rudely"]
CONNECTIVES = ["and", "but", "while", "because"]
PIECES = ["##s", "##ly", "##er"]


def vocabulary() -> list[str]:
    words = (DETERMINERS + NOUNS + VERBS + POSITIVE + NEGATIVE + ADVERBS_POSITIVE + ADVERBS_NEGATIVE + CONNECTIVES)
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *sorted(set(words)), *PIECES]


def _clause(rng: random.Random, mood: int) -> str:
    """mood +1 / -1: the adjectives and adverb lean that way (with some noise)."""
    def adjective():
        pool = POSITIVE if (mood > 0) == (rng.random() < 0.85) else NEGATIVE
        return rng.choice(pool)

    adverb = rng.choice(ADVERBS_POSITIVE if mood > 0 else ADVERBS_NEGATIVE)
    subject = f"{rng.choice(DETERMINERS)} {adjective()} {rng.choice(NOUNS)}"
    obj = f"{rng.choice(DETERMINERS)} {adjective()} {rng.choice(NOUNS)}"
    return f"{subject} {adverb} {rng.choice(VERBS)} {obj}"


def sentence(rng: random.Random) -> tuple[str, int]:
    """A sentence of one or two clauses and its sentiment (1 positive, 0 negative)."""
    mood = rng.choice([1, -1])
    clauses = [_clause(rng, mood)]
    if rng.random() < 0.5:
        clauses.append(_clause(rng, mood))
    return f" {rng.choice(CONNECTIVES)} ".join(clauses) + " .", int(mood > 0)


def write_corpus(path: Path, lines: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sentence(rng)[0] for _ in range(lines)) + "\n")
    return path


def write_task(folder: Path, train: int, dev: int, seed: int = 1) -> tuple[Path, Path]:
    """GLUE-style TSVs (`sentence<TAB>label`) of the sentiment task."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, count in (("train.tsv", train), ("dev.tsv", dev)):
        rows = ["sentence\tlabel"] + [f"{s}\t{label}" for s, label in (sentence(rng) for _ in range(count))]
        (folder / name).write_text("\n".join(rows) + "\n")
        paths.append(folder / name)
    return paths[0], paths[1]
