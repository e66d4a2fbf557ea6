"""Raw text in, raw text out: tokenization, batching, search and detokenization for trained models.

    Translator.from_run("runs/en-fr").translate(["A dog runs."], beam=5)
    Translator.from_run(["runs/en-fr", "runs/en-fr-2"])          # an ensemble
    config = DecodeConfig(beam=5, n_best=3, precision="int8")
    Translator.from_run("runs/en-fr", decode=config).decode(["A dog runs."], config)   # the n best of each line
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from seq2seq import search
from seq2seq.data.batching import pad
from seq2seq.decoding import DecodeConfig, DecodeError
from seq2seq.models.step import Shortlist
from seq2seq.tokenizer import Tokenizer
from seq2seq.trainer import autocast


@dataclass
class Translation:
    text: str
    score: float
    src_pieces: list[str]
    tgt_pieces: list[str]
    attention: list[list[float]]  # (output piece, source piece) weights; the last column is the source EOS-less end


def clean(line: str) -> str:
    """Control characters (other than tab) become spaces; surrounding whitespace goes."""
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in line).strip()


GREEDY_BATCH, BEAM_ROWS = 256, 512  # sentences per batch for greedy search; decoder rows per batch for beam search
CUDA_GREEDY_BATCH, CUDA_BEAM_ROWS = 1024, 1280  # the same on a GPU


def default_batch_size(beam: int, device: torch.device | None = None) -> int:
    """Sentences per batch when none is given: on a CPU 256 for greedy search, about 512 decoder rows for beam search
    (102 sentences with beam 5), the fastest sizes measured on Multi30k with 2 threads; on a GPU, where a small
    batch's steps wait on kernel launches, 1,024 and 1,280 rows (256 sentences with beam 5). The measurements are in
    docs/speed.md, "Decoding batch sizes"."""
    greedy, rows = (CUDA_GREEDY_BATCH, CUDA_BEAM_ROWS) if device is not None and device.type == "cuda" else (
        GREEDY_BATCH, BEAM_ROWS)  # fmt: skip
    return greedy if beam <= 1 else max(1, rows // beam)


def auto_inter_threads(beam: int, device: torch.device) -> int:
    """Batches decoded at once by default: 2 for beam search on a CPU with 2 or more threads (more sentences per
    second than one batch at a time: docs/speed.md, "Two batches at once"), else 1 (greedy search gains nothing)."""
    return 2 if beam > 1 and device.type == "cpu" and torch.get_num_threads() >= 2 else 1


class Translator:
    def __init__(
        self,
        model,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        device: torch.device,
        precision: str = "bf16",
        max_len_ratio: float = 1.5,
        max_src_len: int = 250,
        warn: Callable[[str], None] | None = None,
        recipe=None,
        inter_threads: int | None = None,
        shortlist: torch.Tensor | None = None,
    ) -> None:
        """model: a step model (seq2seq/models/step.py) with `to_pieces`. shortlist (V'): the pieces greedy search
        without scores takes its argmax over (`Shortlist`); beam search and scores always cover every piece."""
        self.model, self.src_tok, self.tgt_tok, self.device = model.eval(), src_tokenizer, tgt_tokenizer, device
        self.shortlist = shortlist
        self.greedy_model = model if shortlist is None else Shortlist(model, shortlist)  # keeps the cut output layer
        self.precision, self.max_len_ratio, self.max_src_len = precision, max_len_ratio, max_src_len
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        self.recipe = recipe  # the Recipe the (first) model was trained with, when loaded from a run
        if inter_threads is not None and inter_threads < 1:
            raise ValueError(f"inter_threads must be at least 1, got {inter_threads}")
        # batches decoded at once on the CPU, each on its share of the threads; None: `auto_inter_threads`
        self.inter_threads = inter_threads

    @classmethod
    def from_run(cls, run_dirs: str | Path | Sequence[str | Path], which: str = "best", device: str = "auto",
                 decode: DecodeConfig | None = None, **kwargs) -> Translator:  # fmt: skip
        """decode: what the model loads with (precision, full_vocabulary) and the defaults of max_len_ratio and
        inter_threads (`DecodeConfig.load_options`); kwargs: those of tasks.translation.load_for_inference, which win."""
        from seq2seq.tasks import load_for_inference  # tasks imports this module

        return load_for_inference(run_dirs, which, device, **{**(decode.load_options() if decode else {}), **kwargs})

    @classmethod
    def from_pretrained(cls, name: str | Path, device: str = "auto", **kwargs) -> Translator:
        """A model folder written by `python -m seq2seq.export`, or one on the Hugging Face Hub ("hf://owner/name",
        or "owner/name" where no such local folder exists; needs the `hub` extra and the network the first time).
        kwargs as for from_run: decode, precision, shortlist, max_len_ratio, inter_threads, ..."""
        from seq2seq.hub import resolve  # huggingface_hub is imported only for a Hub name

        return cls.from_run(resolve(name), "best", device, **kwargs)

    def translate(self, lines: Sequence[str], beam: int = 1, batch_size: int | None = None, **options) -> list[str]:
        """One output line per input line; an empty or blank line gives an empty line. `options`: those of
        translate_n_best."""
        options.setdefault("attention", False)  # only the text is returned: no attention weights ...
        if beam <= 1:
            options.setdefault("scores", False)  # ... and no scores, which greedy search then need not compute
        return [best[0].text for best in self.translate_n_best(lines, beam, 1, batch_size, **options)]

    def translate_n_best(
        self, lines: Sequence[str], beam: int = 5, n_best: int = 1, batch_size: int | None = None, *,
        first_line: int = 1, attention: bool = True, scores: bool = True, generator: torch.Generator | None = None,
        **settings,
    ) -> list[list[Translation]]:
        """beam 1 is greedy search (or sampling with a temperature). `settings`: DecodeConfig fields (alpha,
        min_length, no_repeat_ngram, ban_unk, temperature, top_k, top_p, seed, max_len_ratio, inter_threads), checked
        as DecodeConfig checks them (DecodeError). The other arguments are those of `decode`."""
        config = DecodeConfig(beam=beam, n_best=n_best, batch_size=batch_size, **settings)
        return self.decode(lines, config, first_line=first_line, attention=attention, scores=scores,
                           generator=generator)  # fmt: skip

    def decode(
        self, lines: Sequence[str], config: DecodeConfig, *, first_line: int = 1, attention: bool = True,
        scores: bool = True, generator: torch.Generator | None = None,
    ) -> list[list[Translation]]:
        """The config.n_best best translations of each line. max_len_ratio and inter_threads left out (None): the
        translator's. attention: keep each step's attention weights; scores: greedy search computes the scores (beam
        search always does); generator: for sampling (default: one seeded with config.seed, if any).
        first_line: the number of lines[0] in the warnings (a file translated in chunks)."""
        self._check_loaded_as(config)
        ids = self.src_tok.encode([clean(line) for line in lines])
        for i, seq in enumerate(ids):
            if len(seq) > self.max_src_len:
                self.warn(f"line {first_line + i} has {len(seq)} pieces; translating only its first {self.max_src_len}")
                ids[i] = seq[: self.max_src_len]
        outputs: list[list[Translation]] = [[Translation("", 0.0, [], [], [])] for _ in lines]
        todo = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        batch_size = config.batch_size or default_batch_size(config.beam, self.device)
        batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
        options = {**config.search_options(), "attention": attention,
                   "max_len_ratio": config.max_len_ratio or self.max_len_ratio}  # fmt: skip
        if config.beam <= 1:
            options.update(scores=scores, generator=config.generator() if generator is None else generator)
        threads = config.inter_threads or self.inter_threads
        for rows, results in zip(batches, self._search_all(batches, ids, config, threads, options)):
            for i, hyps in zip(rows, results):
                outputs[i] = [self._translation(ids[i], h) for h in hyps]
        return outputs

    def _check_loaded_as(self, config: DecodeConfig) -> None:
        """The settings a model is loaded with cannot change per call: a config that names others is an error."""
        if config.precision not in (None, self.precision):
            raise DecodeError(f"{{precision}} {config.precision}: this translator decodes in {self.precision}, "
                              "chosen when it was loaded (Translator.from_run(..., decode=config))")  # fmt: skip
        if config.full_vocabulary and self.shortlist is not None:
            raise DecodeError("{full_vocabulary}: this translator was loaded with the training shortlist; load it "
                              "with Translator.from_run(..., decode=config) for the full vocabulary")  # fmt: skip

    def _search_all(self, batches: list[list[int]], ids, config: DecodeConfig, threads: int | None,
                    options: dict) -> Iterator:  # fmt: skip
        """Search results per batch, in order. With inter_threads > 1 on the CPU, that many batches are decoded at
        once, each in its own thread with an equal share of torch's threads (CTranslate2's inter_threads): small
        per-step operations cannot use two cores within one batch, but two batches keep both busy."""
        def run(rows: list[int]):
            return self.search([ids[i] for i in rows], config.beam, config.n_best, **options)

        workers = min(threads or auto_inter_threads(config.beam, self.device), len(batches))
        if workers <= 1 or self.device.type != "cpu":
            yield from map(run, batches)
            return
        total = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                    initargs=(max(1, total // workers),)) as pool:  # fmt: skip
                yield from pool.map(run, batches)
        finally:
            torch.set_num_threads(total)  # a worker's setting is also the default of threads started later

    def search(self, src_ids: Sequence[Sequence[int]], beam: int, n_best: int, **options):
        """search.sample (beam 1) or search.beam_search over one batch; `options` are theirs (max_len_ratio: the
        translator's unless given)."""
        src = pad(src_ids).to(self.device)
        lengths = torch.tensor([len(s) for s in src_ids], dtype=torch.long)
        options.setdefault("max_len_ratio", self.max_len_ratio)
        with autocast(self.device, "bf16" if self.precision == "int8" else self.precision):  # int8: models/int8.py
            if beam <= 1:
                return [[h] for h in search.sample(self.greedy_model, src, lengths, **options)]
            return search.beam_search(self.model, src, lengths, beam, n_best, **options)

    def _translation(self, src_ids: Sequence[int], hyp: search.Hypothesis) -> Translation:
        sp = self.src_tok.sp
        tokens = self.model.to_pieces(hyp.tokens)  # the decoder's column ids -> pieces
        return Translation(
            text=self.tgt_tok.decode([tokens])[0],
            score=hyp.score,
            src_pieces=[sp.id_to_piece(i) for i in src_ids],
            tgt_pieces=[self.tgt_tok.sp.id_to_piece(i) for i in tokens],
            attention=[row[: len(src_ids)] for row in hyp.attention],
        )
