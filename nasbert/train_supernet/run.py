"""Reading a train-supernet run folder back: its config, space, trained supernet, teacher and dev data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from safetensors.torch import load_file

from nasbert.common.checkpoint import MODEL_FILE, newest_checkpoint
from nasbert.common.data import build_corpus
from nasbert.common.teacher import Teacher, load_teacher
from nasbert.errors import UserError
from nasbert.train_supernet.config import TrainConfig, absolute_if_local
from search_space import SearchSpace
from supernet import Supernet


@dataclass
class Run:
    path: Path
    config: TrainConfig
    space: SearchSpace
    device: torch.device

    @cached_property
    def checkpoint(self) -> Path:
        checkpoint = newest_checkpoint(self.path)
        if checkpoint is None:
            raise UserError(f"the run {self.path} has no complete checkpoint yet; train it first")
        return checkpoint

    @cached_property
    def supernet(self) -> Supernet:
        supernet = Supernet(self.space)
        try:
            supernet.load_state_dict(load_file(str(self.checkpoint / MODEL_FILE)))
        except Exception as error:  # noqa: BLE001 - a damaged file reads the same to the user
            raise UserError(f"checkpoint {self.checkpoint} is corrupt ({type(error).__name__}); delete it to use "
                            f"the one before it") from None
        return supernet.to(self.device).eval()

    @cached_property
    def teacher(self) -> Teacher:
        return self.load_teacher()

    def load_teacher(self, with_mlm_head: bool = False) -> Teacher:
        """The run's teacher (or the --teacher given in its place), checked to be the one it was trained with."""
        teacher = self.config.teacher
        if Path(teacher).is_absolute() and not Path(teacher).exists():
            raise UserError(f"the run {self.path} was trained with the teacher {teacher}, which does not exist any "
                            "more; if it moved, pass --teacher with its new place")
        loaded = load_teacher(teacher, self.space.num_blocks, self.device, with_mlm_head=with_mlm_head,
                              trust_remote_code=self.config.trust_remote_code)
        return check_teacher(loaded, self.space)

    @cached_property
    def dev_ids(self) -> torch.Tensor:
        """The run's validation sequences (S, T), rebuilt from its corpus settings (the datasets cache is reused)."""
        stored = self.config.train_files + (self.config.validation_files or [])
        moved = [f for f in stored if Path(f).is_absolute() and not Path(f).exists()]
        if moved:
            raise UserError(f"the run {self.path} was trained on the corpus file {moved[0]}, which does not exist any "
                            "more; its dev data is rebuilt from it, so put the file back at that path")
        corpus = build_corpus(self.config.corpus_spec(), self.teacher.tokenizer, self.config.seed)
        return corpus["validation"]["input_ids"]

    @cached_property
    def block_table(self) -> dict:
        path = self.path / "block_losses.json"
        if not path.exists():
            raise UserError(f"the run {self.path} has no block_losses.json; it is written when train-supernet ends")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{path} is corrupt; re-run train-supernet with --resume to rewrite it") from None


def check_teacher(teacher: Teacher, space: SearchSpace) -> Teacher:
    """The run's teacher must still be the one it was trained with (same hidden size and vocabulary)."""
    config = teacher.config
    if (config.hidden_size, config.vocab_size) != (space.hidden_size, space.vocab_size):
        raise UserError(f"the teacher at {teacher.name} has hidden size {config.hidden_size} and vocab "
                        f"{config.vocab_size}, but the run was trained with {space.hidden_size} and "
                        f"{space.vocab_size}; point the run at its own teacher")
    return teacher


def load_run(path: str | Path, device: str = "cpu", teacher: str | None = None, trust_remote_code: bool = False) -> Run:
    """The run in `path`. `teacher` replaces the teacher path it stored (a teacher that moved); its stored
    trust_remote_code is never used (a run folder is data): `trust_remote_code` is this command's flag."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise UserError(f"{path} is not a train-supernet run (no config.json)")
    try:
        payload = json.loads(config_file.read_text())
        config = TrainConfig.from_dict(payload["train"])
        space = SearchSpace.from_json(payload["space"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{config_file} is corrupt; it does not describe a train-supernet run") from None
    config.trust_remote_code = trust_remote_code
    if teacher:
        config.teacher = absolute_if_local(teacher)
    return Run(path, config, space, torch.device(device))
