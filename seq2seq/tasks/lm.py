"""Language modelling: the vocabulary, BPTT streams, the trainer with exact validation perplexity, loading."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seq2seq import checkpoint
from seq2seq.cli import UsageError
from seq2seq.config import ConfigError, LMRecipe, Recipe
from seq2seq.data.text import StreamBatches, build_vocabulary, split_lines, vocabulary_from, word_count
from seq2seq.decoding import DecodeConfig
from seq2seq.metrics import perplexity
from seq2seq.models.lm import LanguageModel
from seq2seq.tasks.base import Evaluation, TestSet, payload_field, saved_recipe
from seq2seq.tasks.common import (
    build_model,
    build_optimizer,
    load_weights,
    resolve_device,
    write_recipe,
)
from seq2seq.trainer import Trainer


def lm_training(recipe: Recipe, run_dir: Path, resume: bool, device) -> Trainer:
    """Vocabulary from the training split, BPTT streams, model, optimizer and exact validation perplexity."""
    d, t = recipe.data, recipe.train
    train_lines = split_lines(d.corpus, "train")
    if resume:  # the vocabulary the run started with (a SentencePiece model is not rebuilt)
        vocab = vocabulary_from(LMPayload.read(checkpoint.load(run_dir / "last.pt"), run_dir / "last.pt").vocabulary,
                                d.tokens)  # fmt: skip
    else:
        vocab = build_vocabulary(train_lines, d.tokens, d.vocab_size)
        write_recipe(run_dir, recipe)
    model = build_model(recipe, tgt_vocab=len(vocab)).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=StreamBatches(vocab.stream(train_lines), d.batch_size, d.bptt),
        evaluate=lm_evaluator(vocab.stream(split_lines(d.corpus, "valid"))),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra=LMPayload(recipe, vocab.state()).extra(),
    )
    if resume:
        trainer.resume(run_dir / "last.pt")
    return trainer


def lm_evaluator(ids: torch.Tensor):
    """Validation: exact NLL per token over the whole split, state carried through it (see LanguageModel.stream_nll)."""

    def evaluate(model: LanguageModel) -> dict[str, float]:
        total, count = model.stream_nll(ids)
        return {"loss": total / count, "ppl": perplexity(total, count)}

    return evaluate


def load_language_model(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    """A trained lm run: its recipe, the model (eval mode) and its vocabulary."""
    file = checkpoint.find(run_dir, which)
    saved = checkpoint.load(file)
    payload = LMPayload.read(saved, run_dir)
    recipe = payload.recipe
    vocab = vocabulary_from(payload.vocabulary, recipe.data.tokens)
    model = build_model(recipe, tgt_vocab=len(vocab))
    load_weights(model, saved["model"], file)
    return recipe, model.to(resolve_device(device)).eval(), vocab


def lm_split_perplexity(run_dir: str | Path, split: str, which: str = "best", device: str = "auto") -> dict:
    """Exact perplexity of a trained language model on a split of its corpus, in fp32: per model token, and per
    word (whitespace token + one end of line, the unit PTB results are quoted in) from the same total NLL."""
    recipe, model, vocab = load_language_model(run_dir, which, device)
    lines = split_lines(recipe.data.corpus, split)
    total, count = model.stream_nll(vocab.stream(lines))
    words = word_count(lines)
    return {"level": vocab.level, "ppl": perplexity(total, count), "tokens": count,
            "word_ppl": perplexity(total, words), "words": words}  # fmt: skip


@dataclass(frozen=True)
class LMPayload:
    """What a language model's checkpoint holds besides the weights."""

    recipe: LMRecipe
    vocabulary: dict[str, Any]  # `Vocabulary.state()`: its pieces, or its SentencePiece model

    def extra(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "vocabulary": self.vocabulary}

    @classmethod
    def read(cls, saved: dict, where: str | Path) -> LMPayload:
        return cls(saved_recipe(saved, where, "lm"), payload_field(saved, "vocabulary", where))


class LMTask:
    name = "lm"
    default_split = "test"

    def training(self, recipe: LMRecipe, run_dir: Path, resume: bool, device: torch.device, rank: int = 0,
                 world: int = 1) -> Trainer:  # fmt: skip
        if world > 1:  # the BPTT streams are not sharded
            raise ConfigError("the lm task trains in one process; run it without torchrun")
        return lm_training(recipe, run_dir, resume, device)

    def read_payload(self, saved: dict, where: str | Path) -> LMPayload:
        return LMPayload.read(saved, where)

    def load(self, run_dir: str | Path, which: str = "best", device: str = "auto"):
        """(recipe, model in eval mode on `device`, vocabulary)."""
        return load_language_model(run_dir, which, device)

    def evaluate(self, run_dirs: Sequence[Path], test: TestSet, which: str = "best", device: str = "auto",
                 decode: DecodeConfig | None = None, output: Path | None = None,
                 lowercase_tokenized: bool = False) -> Evaluation:  # fmt: skip
        """The exact perplexity of a split of the run's corpus (train | valid | test)."""
        if test.kind != "split":
            raise UsageError("a language model is scored on a split of its corpus: give --split (train | valid | test)")
        if len(run_dirs) > 1:
            raise UsageError("a language model is evaluated one run at a time: give one run directory")
        split = test.split or self.default_split
        r = lm_split_perplexity(run_dirs[0], split, which, device)
        lines = [f"{split} perplexity = {r['ppl']:.2f} ({r['tokens']} {r['level']} tokens)"]
        if r["level"] == "char":
            lines.append(f"{split} bits per character = {math.log2(r['ppl']):.3f}")
        if r["level"] != "word":  # comparable with word-level models: the same total NLL spread over the words
            lines.append(f"{split} word-level perplexity = {r['word_ppl']:.2f} ({r['words']} words incl. <eos>)")
        return Evaluation(r, "\n".join(lines))
