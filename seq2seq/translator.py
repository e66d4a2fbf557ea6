"""Raw text in, raw text out: tokenization, batching, decoding and detokenization for a trained model."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from seq2seq import search
from seq2seq.data.batching import pad
from seq2seq.tokenizer import Tokenizer
from seq2seq.trainer import autocast


class Translator:
    def __init__(
        self,
        model: torch.nn.Module,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        device: torch.device,
        precision: str = "bf16",
        max_len_ratio: float = 1.5,
        max_src_len: int = 250,
        warn: Callable[[str], None] | None = None,
        recipe=None,
    ) -> None:
        self.recipe = recipe  # the Recipe the model was trained with, when loaded from a run
        self.model, self.src_tok, self.tgt_tok, self.device = model.eval(), src_tokenizer, tgt_tokenizer, device
        self.precision, self.max_len_ratio, self.max_src_len = precision, max_len_ratio, max_src_len
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))

    @classmethod
    def from_run(cls, run_dir: str | Path, which: str = "best", device: str = "auto", **kwargs) -> Translator:
        from seq2seq.build import load_for_inference  # build imports this module

        return load_for_inference(run_dir, which, device, **kwargs)

    def translate(self, lines: Sequence[str], batch_size: int = 64) -> list[str]:
        """One output line per input line; an empty or blank line gives an empty line."""
        ids = self.src_tok.encode([line.strip() for line in lines])
        for i, seq in enumerate(ids):
            if len(seq) > self.max_src_len:
                self.warn(f"line {i + 1} has {len(seq)} pieces; translating only its first {self.max_src_len}")
                ids[i] = seq[: self.max_src_len]
        outputs = [""] * len(lines)
        todo = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            hyps = self.decode_ids([ids[i] for i in rows])
            for i, text in zip(rows, self.tgt_tok.decode(hyps)):
                outputs[i] = text
        return outputs

    def decode_ids(self, src_ids: Sequence[Sequence[int]]) -> list[list[int]]:
        src = pad(src_ids).to(self.device)
        lengths = torch.tensor([len(s) for s in src_ids], dtype=torch.long)
        with autocast(self.device, self.precision):
            return search.greedy(self.model, src, lengths, self.max_len_ratio)
