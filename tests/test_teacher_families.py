"""Every supported teacher family: a tiny random model of each, with its own kind of tokenizer, made and saved here.

- ETD at the teacher's width and depth reproduces the teacher's hidden states and MLM logits (<= 1e-5) for BERT,
  RoBERTa, XLM-R, DistilBERT, ELECTRA and ALBERT (whose one shared layer becomes L exact copies); MPNet's student
  has no relative-position bias, so it reproduces an MPNet whose bias is zero and not the MPNet itself.
- train-supernet -> search -> export works for every family, and the exported folder loads with plain transformers
  where nasbert is not installed, follows the teacher's conventions (position numbering, token types, activation,
  eps, E) and carries the teacher's tokenizer with its special tokens.
- Masking uses the tokenizer's mask token, never masks special tokens, and whole-word masking reads each
  vocabulary's word boundaries.
- A teacher family without an adaptor (DeBERTa-v2) exits 2 from train-supernet and from export, with one sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tokenizers
import torch
import transformers
from tiny_assets import PIECES, WORDS, make_corpus, write_vocab

from nasbert.cli import main
from nasbert.common.masking import Masker
from nasbert.common.teacher import TEACHER_FAMILIES, Teacher, load_teacher, teacher_space
from nasbert.errors import UserError
from nasbert.export.inherit import build_inherited_student
from nasbert.modeling_nasbert import NasbertForMaskedLM
from nasbert.train_supernet.etd import importance_order
from nasbert.train_supernet.recipe import TrainConfig, train_supernet
from nasbert.train_supernet.run import load_run
from search_space import Arch

HIDDEN, HEADS, LAYERS, VOCAB_WORDS = 32, 4, 2, 24
SIZES = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=4 * HIDDEN,
             max_position_embeddings=130)


# ---- tiny tokenizers, one of each kind ------------------------------------------------------------------------


def wordpiece(cls, folder: Path, specials: list[str], **kwargs):
    """A WordPiece tokenizer over tiny_assets' words and '##' pieces, with these special tokens first."""
    vocab = write_vocab(folder / "vocab.txt").read_text().split()
    vocab = specials + [token for token in vocab if not token.startswith("[")]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return cls(vocab=str(folder / "vocab.txt"), **kwargs)


def byte_level_bpe(folder: Path):
    """RoBERTa's byte-level BPE from a vocab.json and merges.txt written here: the letters, 'Ġ' (a space), and
    merges that build the first VOCAB_WORDS words after a space; the other words stay in pieces."""
    letters = sorted(set("".join(WORDS)) | set(".,"))
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "Ġ", *letters]
    merges = []
    for word in WORDS[:VOCAB_WORDS]:
        piece = "Ġ"
        for letter in word:
            merges.append(f"{piece} {letter}")
            piece += letter
            if piece not in vocab:
                vocab.append(piece)
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return transformers.RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def unigram(cls, specials: list[str]):
    """A SentencePiece (Unigram, '▁' marks a word start) tokenizer built with the tokenizers library: whole pieces
    for the first VOCAB_WORDS words, single letters (and '▁') for the rest."""
    letters = sorted(set("".join(WORDS)) | set(".,"))
    pieces = [(token, 0.0) for token in specials] + [(f"▁{word}", -2.0) for word in WORDS[:VOCAB_WORDS]]
    pieces += [("▁", -3.0)] + [(letter, -4.0) for letter in letters] + [(p[2:], -3.5) for p in PIECES]
    return cls(vocab=pieces)


# ---- the families -------------------------------------------------------------------------------------------


def make_teacher(family: str, folder: Path, seed: int = 0) -> Path:
    """A random `family` model with an MLM head (ELECTRA: a discriminator, no head) and its tokenizer, saved."""
    folder.mkdir(parents=True, exist_ok=True)
    t = transformers
    if family == "bert":
        tokenizer = wordpiece(t.BertTokenizer, folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        config, model_class = t.BertConfig(vocab_size=len(tokenizer), **SIZES), t.BertForMaskedLM
    elif family == "roberta":
        tokenizer = byte_level_bpe(folder)
        config = t.RobertaConfig(vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=1, **SIZES)
        model_class = t.RobertaForMaskedLM
    elif family == "xlm-roberta":
        tokenizer = unigram(t.XLMRobertaTokenizer, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        config = t.XLMRobertaConfig(vocab_size=len(tokenizer), type_vocab_size=1, pad_token_id=1,
                                    layer_norm_eps=1e-5, **SIZES)
        model_class = t.XLMRobertaForMaskedLM
    elif family == "distilbert":
        tokenizer = wordpiece(t.DistilBertTokenizer, folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        config = t.DistilBertConfig(vocab_size=len(tokenizer), dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS,
                                    hidden_dim=4 * HIDDEN, max_position_embeddings=130, activation="gelu")
        model_class = t.DistilBertForMaskedLM
    elif family == "electra":
        tokenizer = wordpiece(t.ElectraTokenizer, folder, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        config = t.ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, **SIZES)
        model_class = t.ElectraModel  # the discriminator's encoder: no MLM head
    elif family == "albert":
        tokenizer = unigram(t.AlbertTokenizer, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"])
        config = t.AlbertConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_act="gelu_new", **SIZES)
        model_class = t.AlbertForMaskedLM
    elif family == "mpnet":
        tokenizer = wordpiece(t.MPNetTokenizer, folder, ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
        config = t.MPNetConfig(vocab_size=len(tokenizer), pad_token_id=1, **SIZES)
        model_class = t.MPNetForMaskedLM
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():  # LayerNorms away from (1, 0), so a wrongly copied or skipped norm shows
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


FAMILIES = list(TEACHER_FAMILIES)
EXACT = [f for f in FAMILIES if TEACHER_FAMILIES[f].not_inherited is None]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.fixture(scope="module")
def corpus(root) -> str:
    return str(make_corpus(root / "corpus.txt", 120))


def teacher_folder(root: Path, family: str) -> Path:
    folder = root / family / "teacher"
    return folder if folder.exists() else make_teacher(family, folder)


def test_every_listed_family_has_a_test():
    assert set(FAMILIES) == {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "mpnet"}


# ---- ETD at the teacher's shape -----------------------------------------------------------------------------


def padded_ids(teacher: Teacher) -> tuple[torch.Tensor, torch.Tensor]:
    """Three tokenized sentences of different lengths, padded by the tokenizer (its own pad id and mask)."""
    texts = [" ".join(WORDS[i::7]) for i in range(3)]
    texts[1] = " ".join(texts[1].split()[:2])
    batch = teacher.tokenizer(texts, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    return batch["input_ids"], batch["attention_mask"]


def etd_student(teacher: Teacher, corpus_ids: torch.Tensor) -> tuple[NasbertForMaskedLM, torch.Tensor]:
    """The etd-impt student of the teacher's own shape (every teacher layer an M and an F, at full width)."""
    order = importance_order(teacher, [corpus_ids], teacher.tokenizer.mask_token_id)
    space = teacher_space(teacher, widths=(HIDDEN,))
    arch = "/".join(f"{HIDDEN}:" + ",".join(["M", "F"] * teacher.layers_per_block) for _ in range(teacher.num_blocks))
    student = build_inherited_student("etd-impt", space, arch, teacher, order=order,
                                      teacher_mlm_head=teacher.mlm_head).eval()
    return student, order.hidden


def compare(teacher: Teacher, student: NasbertForMaskedLM, ids, mask, hidden_order) -> dict[str, float]:
    """Largest differences between the teacher's and the student's block states, last state and MLM logits."""
    with torch.no_grad():
        ours = student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        theirs = teacher.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        states = ours.hidden_states  # embeddings, each block's output (student order), the last state (H)
        blocks = [(states[1 + n] - theirs.hidden_states[b][..., hidden_order]).abs().max().item()
                  for n, b in enumerate(teacher.boundaries[1:])]
        diffs = {"blocks": max(blocks), "last": (states[-1] - theirs.last_hidden_state).abs().max().item()}
        if teacher.mlm_head is not None:
            diffs["logits"] = (ours.logits - teacher.mlm_head(theirs.last_hidden_state)).abs().max().item()
    return diffs


def corpus_batch(teacher: Teacher) -> torch.Tensor:
    return teacher.tokenizer([" ".join(WORDS[i: i + 9]) for i in range(8)], padding="max_length", max_length=12,
                             truncation=True, return_tensors="pt")["input_ids"]


@pytest.mark.parametrize("family", EXACT)
def test_etd_at_the_teachers_shape_reproduces_its_hidden_states(root, family):
    teacher = load_teacher(str(teacher_folder(root, family)), num_blocks=2, with_mlm_head=True)
    assert (teacher.mlm_head is None) == (family == "electra")  # a discriminator has no MLM head
    student, hidden_order = etd_student(teacher, corpus_batch(teacher))
    diffs = compare(teacher, student, *padded_ids(teacher), hidden_order)
    assert max(diffs.values()) <= 1e-5, diffs


def test_an_mpnet_student_is_the_mpnet_without_its_relative_position_bias(root):
    teacher = load_teacher(str(teacher_folder(root, "mpnet")), num_blocks=2, with_mlm_head=True)
    student, hidden_order = etd_student(teacher, corpus_batch(teacher))
    ids, mask = padded_ids(teacher)
    with_bias = compare(teacher, student, ids, mask, hidden_order)
    assert with_bias["last"] > 1e-3  # the bias matters: the student is an approximation
    with torch.no_grad():
        teacher.model.encoder.relative_attention_bias.weight.zero_()
    without_bias = compare(teacher, student, ids, mask, hidden_order)
    assert max(without_bias.values()) <= 1e-5, without_bias
    assert "relative-position attention bias" in TEACHER_FAMILIES["mpnet"].not_inherited


def test_albert_layers_are_one_shared_layer(root):
    teacher = load_teacher(str(teacher_folder(root, "albert")), num_blocks=2)
    shared = teacher.model.encoder.albert_layer_groups[0].albert_layers[0]
    assert teacher.layer(0).query is teacher.layer(1).query is shared.attention.query
    assert teacher.embedding_parts.projection is teacher.model.encoder.embedding_hidden_mapping_in


def test_an_albert_with_several_layers_per_group_is_refused_in_one_sentence(tmp_path):
    transformers.AlbertConfig(inner_group_num=2, **SIZES).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="inner_group_num 2") as caught:
        load_teacher(str(tmp_path))
    assert len(str(caught.value).splitlines()) == 1 and "ALBERT adaptor" in str(caught.value)


# ---- the whole pipeline, per family ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(root, corpus) -> dict[str, Path]:
    """train-supernet (3 steps) -> search (params budget) -> export with 2 steps of refinement (every loss: MLM,
    KL from the teacher's MLM head where it has one, hidden states, attention relations), for every family."""
    folders = {}
    for family in FAMILIES:
        base = root / family
        teacher = teacher_folder(root, family)
        run = train_supernet(TrainConfig(teacher=str(teacher), train_files=[corpus], output=str(base / "run"),
                                         num_blocks=2, seq_len=16, batch_size=4, widths=[16, 32], max_steps=3,
                                         eval_every=100, save_every=100, eval_batches=1, candidates_per_block=3,
                                         init="etd-impt", importance_batches=1))
        assert main(["search", str(run), "--params-budget", "1M", "--top-k", "2", "--recheck-batches", "1",
                     "--weight-students", "0", "--measure", "0", "--output", str(base / "search.json")]) == 0
        assert main(["export", str(run), "--search", str(base / "search.json"), "--output", str(base / "student"),
                     "--no-measure", "--refine-steps", "2", "--train-file", corpus, "--refine-batch-size", "4",
                     "--refine-seq-len", "16", "--refine-warmup-steps", "1"]) == 0
        folders[family] = base / "student"
    return folders


_LOAD_WITHOUT_NASBERT = textwrap.dedent("""
    import json, sys
    for name in ("nasbert", "search_space", "supernet"):
        sys.modules[name] = None
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
    report = {}
    for folder in sys.argv[1:]:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        cls = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=2).eval()
        batch = tokenizer(["the cat sees a bird", "a dog"], padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = mlm(**batch).logits
            assert cls(**batch).logits.shape == (2, 2)
        report[folder] = {"tokenizer": type(tokenizer).__name__, "cls": batch["input_ids"][0, 0].item(),
                          "cls_token_id": tokenizer.cls_token_id, "mask_token": tokenizer.mask_token,
                          "inputs": sorted(batch), "logits": logits.shape[-1], "finite": bool(logits.isfinite().all())}
    print(json.dumps(report))
""")


def test_every_family_exports_a_folder_plain_transformers_loads(root, exported, tmp_path):
    (tmp_path / "load.py").write_text(_LOAD_WITHOUT_NASBERT)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, str(tmp_path / "load.py"), *map(str, exported.values())], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for family, folder in exported.items():
        loaded = report[str(folder)]
        teacher = load_teacher(str(teacher_folder(root, family)), num_blocks=2)
        assert loaded["cls"] == loaded["cls_token_id"] == teacher.tokenizer.cls_token_id, family
        assert loaded["mask_token"] == teacher.tokenizer.mask_token and loaded["finite"], family
        assert loaded["logits"] == teacher.config.vocab_size, family


def test_students_follow_their_teachers_conventions(exported):
    expected = {  # family: (position_padding_idx, type_vocab_size, hidden_act, embedding_size)
        "bert": (None, 2, "gelu", 32), "roberta": (1, 1, "gelu", 32), "xlm-roberta": (1, 1, "gelu", 32),
        "distilbert": (None, 0, "gelu", 32), "electra": (None, 2, "gelu", 16), "albert": (None, 2, "gelu_new", 16),
        "mpnet": (1, 0, "gelu", 32)}
    for family, folder in exported.items():
        config = json.loads((folder / "config.json").read_text())
        facts = json.loads((folder / "nasbert_export.json").read_text())
        padding, types, act, e = expected[family]
        if facts["init"] == "supernet":
            act = "gelu"  # the supernet's layers: the student computes what the supernet computed
        assert (config.get("position_padding_idx"), config["type_vocab_size"], config["hidden_act"],
                config["embedding_size"]) == (padding, types, act, e), family
        model = NasbertForMaskedLM.from_pretrained(folder)
        assert (model.nasbert.embeddings.token_type_embeddings is None) == (types == 0), family
        assert facts["params"] == facts["params_encoder"], family  # the space's count is the built student's


@pytest.mark.parametrize("family", FAMILIES)
def test_a_supernet_student_computes_the_supernet_chain_after_the_teachers_embeddings(root, exported, family):
    """Extraction stays exact for every family: the teacher's (projected) embeddings, then the chained blocks."""
    run = load_run(root / family / "run")
    teacher = run.teacher
    arch = Arch.parse("32:M,S3/16:F,M")
    student = build_inherited_student("supernet", run.space, arch, teacher, supernet=run.supernet).eval()
    ids, mask = padded_ids(teacher)
    with torch.no_grad():
        chain = run.supernet.forward_chain(teacher.block_states(ids, mask)[0], arch, mask)
        out = student.nasbert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (chain - out)[mask.bool()].abs().max() <= 1e-5


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_onnx_graphs_of_students_numbering_positions_from_padding_or_without_token_types(exported, tmp_path, family):
    pytest.importorskip("onnxruntime")
    from nasbert.export.onnx import check_onnx_parity, export_onnx

    model = NasbertForMaskedLM.from_pretrained(exported[family]).eval()
    path = export_onnx(model, tmp_path / "student.onnx", seq_len=32)
    assert check_onnx_parity(model, path) <= 1e-4  # a padded batch of another length: positions follow the padding


def test_students_without_token_types_finetune_with_kd_from_their_teacher(root, exported, tmp_path, capsys):
    """DistilBERT: its tokenizer gives no token_type_ids, its forward takes none; a sentence-pair task still runs,
    for the plain teacher and for the student with KD from it."""
    lines = ["sentence1\tsentence2\tlabel"] + [f"{' '.join(WORDS[i % 30: i % 30 + 4])}\t{WORDS[i % 40]} cat\t{i % 2}"
                                               for i in range(32)]
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    data = ["--train-file", str(tmp_path / "pairs.tsv"), "--validation-file", str(tmp_path / "pairs.tsv"),
            "--epochs", "1", "--batch-size", "16", "--report-to", "none"]
    assert main(["finetune", str(teacher_folder(root, "distilbert")), "--output", str(tmp_path / "t"), *data]) == 0
    assert main(["finetune", str(exported["distilbert"]), "--output", str(tmp_path / "s"), "--teacher",
                 str(tmp_path / "t"), "--kd-alpha", "0.5", *data]) == 0
    assert "KD from" in capsys.readouterr().out
    assert json.loads((tmp_path / "s" / "train_results.json").read_text())["train_kd_loss"] > 0


# ---- masking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "albert", "mpnet"])
def test_masking_uses_the_mask_token_and_never_special_tokens(root, family):
    tokenizer = load_teacher(str(teacher_folder(root, family)), num_blocks=2).tokenizer
    ids = tokenizer([" ".join(WORDS[i: i + 12]) for i in range(16)], padding="max_length", max_length=20,
                    truncation=True, return_tensors="pt")["input_ids"]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    for whole_word in (False, True):
        masked, labels = Masker(tokenizer, probability=0.5, whole_word=whole_word, seed=1).with_labels(ids)
        chosen = labels != -100
        assert chosen.any() and not (chosen & special).any(), family
        assert (masked[chosen] == tokenizer.mask_token_id).float().mean() > 0.6, family
        assert (masked[~chosen] == ids[~chosen]).all()


@pytest.mark.parametrize("family, word_start", [("roberta", "Ġ"), ("xlm-roberta", "▁")])
def test_whole_word_masking_reads_word_starts_in_bpe_and_sentencepiece(root, family, word_start):
    tokenizer = load_teacher(str(teacher_folder(root, family)), num_blocks=2).tokenizer
    ids = tokenizer(["the cat runs and sleeps under a river"] * 64, return_tensors="pt")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    split = [t for t in range(2, len(tokens) - 1) if not tokens[t].startswith(word_start)]
    assert split  # some word is in pieces
    _, labels = Masker(tokenizer, probability=0.3, whole_word=True, seed=0).with_labels(ids)
    chosen = labels != -100
    for t in split:  # a continuation piece is chosen exactly when the piece before it is
        assert (chosen[:, t] == chosen[:, t - 1]).all(), tokens
    assert chosen[:, 1].any()  # the first word, whose piece carries no marker after <s>, can be chosen


def test_whole_word_masking_refuses_a_vocabulary_without_word_boundaries():
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[MASK]": 0, "[UNK]": 1, "a": 2}, unk_token="[UNK]"))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, mask_token="[MASK]",
                                                     unk_token="[UNK]")
    with pytest.raises(UserError, match="word boundaries") as caught:
        Masker(tokenizer, whole_word=True)
    assert len(str(caught.value).splitlines()) == 1
    Masker(tokenizer, whole_word=False)  # single tokens need no word boundaries


# ---- a family without an adaptor --------------------------------------------------------------------------------


def test_a_family_without_an_adaptor_exits_2_from_train_supernet_and_export(root, corpus, exported, capsys):
    folder = root / "deberta"
    tokenizer = transformers.BertTokenizer(vocab=str(write_vocab(root / "vocab.txt")))
    transformers.DebertaV2Model(transformers.DebertaV2Config(vocab_size=len(tokenizer), **SIZES)).save_pretrained(
        folder)
    tokenizer.save_pretrained(folder)
    code = main(["train-supernet", "--teacher", str(folder), "--train-file", corpus, "--output", str(root / "d"),
                 "--max-steps", "1"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "'deberta-v2'" in error and "supported teacher families" in error, error
    assert all(name in error for name in FAMILIES)
    run = exported["bert"].parent / "run"
    config_file = run / "config.json"
    saved = config_file.read_text()
    try:
        payload = json.loads(saved)
        payload["train"]["teacher"] = str(folder)
        config_file.write_text(json.dumps(payload))
        code = main(["export", str(run), "--arch", "16:M,F/16:M,F", "--output", str(root / "d-student"),
                     "--no-measure"])
    finally:
        config_file.write_text(saved)
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "'deberta-v2'" in error and "supported teacher families" in error, error
    assert not (root / "d-student").exists()
