"""A translation run directory in a second, without training: SentencePiece models learned from the toy pair, and a
model built from the toy recipe with its initial weights. For tests of the commands' input, output and errors,
where what the model says does not matter (tests/conftest.py's toy_run is the trained one)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from .conftest import toy_pair, toy_recipe


def untrained_run(folder: Path, *overrides: str) -> Path:
    """FOLDER/run with best.pt and last.pt of one untrained model (BPE pieces, so any text is segmented)."""
    from seq2seq import checkpoint
    from seq2seq.tasks import build_model, train_tokenizers

    recipe = toy_recipe("tokenizer.model_type=bpe", *overrides)
    rng = random.Random(0)
    pairs = [toy_pair(rng) for _ in range(300)]
    src, tgt = train_tokenizers(recipe, {"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]})
    torch.manual_seed(0)
    model = build_model(recipe, len(src), len(tgt))
    run = folder / "run"
    run.mkdir(parents=True)
    payload = {"recipe": recipe.to_dict(), "tokenizers": {"src": src.proto, "tgt": tgt.proto},
               "model": model.state_dict()}  # fmt: skip
    for name in ("best.pt", "last.pt"):
        checkpoint.save(run / name, payload)
    return run
