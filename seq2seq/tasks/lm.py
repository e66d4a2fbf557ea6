"""Language modelling: the vocabulary, BPTT streams, the trainer with exact validation perplexity, loading."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq import checkpoint
from seq2seq.tasks.common import (
    build_model,
    build_optimizer,
    check_task,
    load_weights,
    resolve_device,
    write_recipe,
)
from seq2seq.config import Recipe, recipe_from_dict
from seq2seq.data.text import StreamBatches, build_vocabulary, split_lines, vocabulary_from, word_count
from seq2seq.metrics import perplexity
from seq2seq.models.lm import LanguageModel
from seq2seq.trainer import Trainer


def lm_training(recipe: Recipe, run_dir: Path, resume: bool, device) -> Trainer:
    """Vocabulary from the training split, BPTT streams, model, optimizer and exact validation perplexity."""
    d, t = recipe.data, recipe.train
    train_lines = split_lines(d.corpus, "train")
    if resume:  # the vocabulary the run started with (a SentencePiece model is not rebuilt)
        vocab = vocabulary_from(checkpoint.load(run_dir / "last.pt")["vocabulary"], d.tokens)
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
        extra={"recipe": recipe.to_dict(), "vocabulary": vocab.state()},
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
    payload = checkpoint.load(file)
    recipe = recipe_from_dict(payload["recipe"])
    check_task(recipe, "lm", run_dir)
    vocab = vocabulary_from(payload["vocabulary"], recipe.data.tokens)
    model = build_model(recipe, tgt_vocab=len(vocab))
    load_weights(model, payload["model"], file)
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
