"""The refinement-loss registry: a loss registered here (and only here) refines a student through the public
refine path; every registered loss reads only features the teacher and a student give."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_assets import make_corpus, make_tiny_teacher
from torch import nn

from nasbert.common.losses import REFINE_LOSSES, DistillationLoss, register_loss
from nasbert.common.teacher import load_teacher, teacher_space
from nasbert.errors import UserError
from nasbert.export.config import LOSSES, RefineConfig
from nasbert.export.refine import TEACHER_FEATURES, Refinee, refine, teacher_capture, teacher_features
from nasbert.modeling_nasbert import NasbertForMaskedLM
from nasbert.student import student_config
from search_space import Arch

ARCH = "32:M,F,S3,I/16:F,M,S5,I"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("losses")
    teacher = load_teacher(str(make_tiny_teacher(root / "teacher", layers=4)), num_blocks=2, with_mlm_head=True)
    return {"teacher": teacher, "corpus": str(make_corpus(root / "corpus.txt", 300))}


def _student(teacher) -> tuple[NasbertForMaskedLM, nn.ModuleList]:
    """A randomly initialised student of ARCH and its block adapters (width -> the teacher's hidden size)."""
    torch.manual_seed(0)
    space = teacher_space(teacher, (16, 32))
    arch = Arch.parse(ARCH)
    student = NasbertForMaskedLM(student_config(space, arch, pad_token_id=teacher.tokenizer.pad_token_id))
    adapters = nn.ModuleList(nn.Linear(block.width, space.hidden_size) for block in list(arch)[:-1])
    return student, adapters


class LastStateL1(DistillationLoss):
    """L1 between the student's and the teacher's last block-boundary state; counts its calls."""

    needs = frozenset({"block_states"})
    student_needs = frozenset({"block_states"})

    def __init__(self):
        self.calls = 0

    def __call__(self, student, teacher, config) -> torch.Tensor:
        self.calls += 1
        return (student["block_states"][-1].float() - teacher["block_states"][-1].float()).abs().mean()


def test_a_registered_loss_refines_a_student(assets, tmp_path):
    loss = register_loss("last_l1", LastStateL1())
    try:
        config = RefineConfig(train_files=[assets["corpus"]], output=str(tmp_path / "refine"), steps=60,
                              batch_size=8, seq_len=32, lr=3e-3, warmup_steps=3, save_every=100, losses=["last_l1"])
        student, adapters = _student(assets["teacher"])
        recipe = refine(config, assets["teacher"], {"s": student}, {"s": adapters})
    finally:
        REFINE_LOSSES.pop("last_l1")
    assert loss.calls == 60
    assert recipe.needs == {"block_states"} and recipe.teacher_capture is None  # the teacher computed only that
    rows = [json.loads(line) for line in (tmp_path / "refine/metrics.jsonl").read_text().splitlines()]
    losses = [row["losses"]["s"] for row in rows]
    assert set(losses[0]) == {"last_l1", "total"} and losses[0]["last_l1"] == losses[0]["total"]
    first, last = (sum(row["last_l1"] for row in part) for part in (losses[:3], losses[-3:]))
    assert last < 0.8 * first, (first, last)
    assert "last_l1" not in LOSSES
    with pytest.raises(UserError, match="--losses takes some of mlm, kl, hidden, attention, sentence, not last_l1"):
        RefineConfig(train_files=[assets["corpus"]], losses=["last_l1"])  # validation reads the live registry


def test_a_loss_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_loss("mlm", LastStateL1())


@pytest.mark.parametrize("name", list(REFINE_LOSSES))
def test_each_loss_reads_what_the_teacher_and_a_student_give(assets, name):
    teacher = assets["teacher"]
    loss = REFINE_LOSSES[name]
    assert loss.needs <= TEACHER_FEATURES
    student, adapters = _student(teacher)
    refinee = Refinee(student, adapters)
    assert loss.student_needs <= refinee.provides  # ARCH has an attention layer: it gives every feature
    ids = torch.randint(5, teacher.config.vocab_size, (2, 16))
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    capture = teacher_capture(teacher)
    try:
        given = teacher_features(teacher, ids, labels, loss.needs, capture)
    finally:
        capture.remove()
    assert set(given) == set(loss.needs)  # what it needs, and only that
    refinee.losses = {name: loss}
    config = RefineConfig(train_files=["unused.txt"], losses=[name])
    (value,) = refinee(ids, labels, given, config).values()
    assert value.dim() == 0 and torch.isfinite(value) and value.requires_grad
    assert loss.weight(config, [name]) > 0


def test_the_sentence_loss_is_zero_for_the_teachers_embeddings_scaled_and_opt_in():
    """The sentence-embedding loss compares mean-pooled, normalised final states: the teacher's own states times 3
    score 0, other states more (with a gradient); it is accepted by --losses but not in the default set."""
    loss = REFINE_LOSSES["sentence"]
    torch.manual_seed(0)
    teacher_states = torch.randn(4, 8, 16)
    assert loss({"block_states": [teacher_states * 3]}, {"block_states": [teacher_states]}, None).item() < 1e-6
    other = torch.randn(4, 8, 16, requires_grad=True)
    value = loss({"block_states": [other]}, {"block_states": [teacher_states]}, None)
    value.backward()
    assert value.item() > 0.1 and other.grad.abs().sum() > 0
    assert "sentence" not in LOSSES and "sentence" not in RefineConfig(train_files=["x.txt"]).losses
    assert RefineConfig(train_files=["x.txt"], losses=["hidden", "sentence"]).losses == ["hidden", "sentence"]
