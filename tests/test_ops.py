"""The op registry: every family has its spec, elastic module, student module, latency family and (where it has a
teacher counterpart) its teacher-copy rule; a toy op registered here alone gets a supernet, an exact extraction, a
latency-table entry and an export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import padded_batch, tiny_bert_config
from torch import nn
from transformers import BertModel

import nasbert.modeling_nasbert as modeling
import supernet.supernet
from nasbert.common.teacher import Teacher
from nasbert.latency import profile_space
from nasbert.latency.lut import LatencyTable, known_families, op_family
from nasbert.modeling_nasbert import OP_CLASSES, NasbertForMaskedLM, NasbertLayer, NasbertOp
from nasbert.registration import save_student
from nasbert.student import build_student, extract_student, student_config
from nasbert.train_supernet.etd import TEACHER_COPY, head_rows, init_supernet_from_teacher, random_order
from search_space import Arch, SearchSpace, get_op
from search_space.ops import FAMILIES, IDENTITY_NAME, OpSpec, register_op, unregister_family
from supernet import ELASTIC_OPS, ElasticLinear, ElasticOp, Supernet, elastic_op

REAL_FAMILIES = [f for f in FAMILIES if f != IDENTITY_NAME]


def family_ops(space: SearchSpace, family: str) -> list[str]:
    return [op for op in space.ops if get_op(op).family == family]


# ---- every registered family ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", REAL_FAMILIES)
def test_each_family_has_every_part(family):
    space = SearchSpace.tiny()
    assert family in ELASTIC_OPS and family in OP_CLASSES
    assert family_ops(space, family), f"the tiny space has no op of family {family}"
    for op in family_ops(space, family):
        assert op_family(op) in known_families() and op_family(op) in space.families
        elastic = elastic_op(space, op)
        assert isinstance(elastic, ELASTIC_OPS[family])
        config = student_config(space, space.largest_arch())
        for width in space.widths:
            layer = NasbertLayer(config, op, width)
            assert isinstance(layer.op, OP_CLASSES[family]) and layer.family == family
            built = sum(p.numel() for p in layer.parameters())
            assert built == space.layer_params(op, width), f"{op}@{width}: spec and built module disagree"
            # the elastic module exports exactly the student module's weights at every width
            exported = {k: tuple(v.shape) for k, v in elastic.export(width).items()}
            assert exported == {k: tuple(v.shape) for k, v in layer.op.state_dict().items()}


def test_identity_and_teacher_copy_rules():
    assert get_op(IDENTITY_NAME).is_identity and IDENTITY_NAME not in ELASTIC_OPS | OP_CLASSES
    assert set(TEACHER_COPY) <= set(REAL_FAMILIES)
    assert "S" not in TEACHER_COPY and IDENTITY_NAME not in TEACHER_COPY  # no teacher counterpart
    assert set(TEACHER_COPY) == {"M", "F"}


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="not registered"):
        SearchSpace.tiny(families=("M", "Q"))


def test_padding_masks_copy_agrees_with_the_student_file():
    ids, mask = padded_batch(50, [7, 3, 5], 7)
    for attention_mask in (mask, torch.ones_like(mask), None):
        for dtype in (torch.float32, torch.bfloat16):
            ours = supernet.supernet.padding_masks(attention_mask, dtype)
            theirs = modeling.padding_masks(attention_mask, dtype)
            for a, b in zip(ours, theirs):
                assert (a is None and b is None) or (a.dtype == b.dtype and torch.equal(a, b))


# ---- a toy op, registered in this test only ---------------------------------------------------------------


def _glu_params(w: int, head_dim: int, ffn_ratio: int) -> int:
    return 2 * (w * w + w) + 2 * w  # value and gate linears, LayerNorm


def _glu_flops(w: int, head_dim: int, ffn_ratio: int, seq_len: int) -> int:
    return 2 * seq_len * 2 * w * w


class ElasticGLU(ElasticOp):
    """Toy op G at width w: value(x) * sigmoid(gate(x)), leading slices of two max-width linears."""

    def __init__(self, max_width: int):
        super().__init__()
        self.value = ElasticLinear(max_width, max_width)
        self.gate = ElasticLinear(max_width, max_width)

    @classmethod
    def from_space(cls, space: SearchSpace, op: str) -> ElasticGLU:
        return cls(space.max_width)

    def forward(self, x, attn_mask=None, pad_mask=None):
        width = x.shape[-1]
        return self.value(x, width) * torch.sigmoid(self.gate(x, width))

    def export(self, width: int) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name in ("value", "gate")
                for k, v in getattr(self, name).export(width, width).items()}


class NasbertGLU(NasbertOp):
    """The student's toy op G."""

    def __init__(self, config, width: int):
        super().__init__()
        self.value = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)

    def forward(self, x, attn_mask=None, pad_mask=None):
        return self.value(x) * torch.sigmoid(self.gate(x))


@pytest.fixture
def toy_op():
    """Registers op family G in every registry it needs (no teacher-copy rule), and removes it afterwards."""
    register_op(OpSpec("G", "gated linear unit (toy)", _glu_params, _glu_flops))
    ELASTIC_OPS["G"] = ElasticGLU
    OP_CLASSES["G"] = NasbertGLU
    yield "G"
    unregister_family("G")
    ELASTIC_OPS.pop("G")
    OP_CLASSES.pop("G")


TOY_ARCH = "32:G,M,G,S3/16:F,G,I,I"


def test_a_toy_op_is_one_entry_per_registry(toy_op, tiny_teacher, tmp_path):
    space = SearchSpace.tiny(families=("M", "F", "S", toy_op))
    assert "G" in space.ops and "G" in SearchSpace.from_json(space.to_json()).ops
    torch.manual_seed(0)
    net = Supernet(space).eval()
    assert all(isinstance(layer.ops["G"], ElasticGLU) for block in net.blocks for layer in block.layers)

    # spec == built, and the extraction is exact (with padding)
    rng = np.random.default_rng(0)
    archs = [Arch.parse(TOY_ARCH)] + [space.sample(rng) for _ in range(5)]
    assert any("G" in block.active_ops for arch in archs[1:] for block in arch)
    ids, mask = padded_batch(space.vocab_size, [16, 11, 4], 16)
    for arch in archs:
        with torch.device("meta"):  # shapes only
            built = build_student(space, arch)
        assert sum(p.numel() for p in built.parameters()) == space.params(arch, pooler=True)
        student = extract_student(net, arch, tiny_teacher.embeddings).eval()
        with torch.no_grad():
            chain = net.forward_chain(tiny_teacher.embeddings(input_ids=ids), arch, mask)
            out = student(ids, attention_mask=mask).last_hidden_state
        assert (chain - out)[mask.bool()].abs().max().item() <= 1e-5, str(arch)

    # ETD starts M and F from the teacher and leaves G (no teacher-copy rule) as it was
    teacher = Teacher(BertModel(tiny_bert_config(num_hidden_layers=4)).eval(), tokenizer=None, num_blocks=2,
                      name="tiny")
    before = {k: v.clone() for k, v in net.blocks[0].layers[0].ops["G"].state_dict().items()}
    init_supernet_from_teacher(net, teacher, random_order(teacher))
    after = net.blocks[0].layers[0].ops["G"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    order = random_order(teacher)
    rows, dims = head_rows(order.heads[0], 8), order.hidden
    assert torch.equal(net.blocks[0].layers[0].ops["M"].query.weight, teacher.layer(0).query.weight[rows][:, dims])

    # a latency-table entry per width, and a prediction that counts it under its own family
    table = profile_space(space, threads=1, batch_size=1, seq_len=16, min_run_time_s=0.01, rounds=1,
                          heads=("pooler",), progress=False)
    assert set(table.layers["G"]) == set(space.widths) and "G" in table.families and "G" in known_families()
    parts = table.components_ms(TOY_ARCH)
    assert parts["G"] == pytest.approx(2 * table.layer_entry("G", 32).median_ms + table.layer_entry("G", 16).median_ms)
    again = LatencyTable.from_json(table.to_json())  # the file keeps 6 decimals
    assert again.predict_ms(TOY_ARCH) == pytest.approx(table.predict_ms(TOY_ARCH), abs=1e-5)

    # an export: the folder loads back (in this process, where G is registered) and computes the same
    mlm = extract_student(net, TOY_ARCH, tiny_teacher.embeddings, model_class=NasbertForMaskedLM).eval()
    folder = save_student(mlm, tmp_path / "toy-student")
    loaded = NasbertForMaskedLM.from_pretrained(folder).eval()
    assert loaded.config.arch == TOY_ARCH
    assert isinstance(loaded.nasbert.encoder.blocks[0].layers[0].op, NasbertGLU)
    with torch.no_grad():
        assert torch.equal(loaded(ids, attention_mask=mask).logits, mlm(ids, attention_mask=mask).logits)


def test_the_toy_op_is_gone_after_its_test():
    assert "G" not in FAMILIES and "G" not in ELASTIC_OPS and "G" not in OP_CLASSES
    assert "G" not in known_families()
