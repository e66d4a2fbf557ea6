"""Translation: the trainer with BLEU validation (its data: translation_data.py), and inference."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from tqdm import tqdm

from seq2seq import checkpoint
from seq2seq.cli import UsageError, atomic_output
from seq2seq.config import DECODE_PRECISIONS, ConfigError, Recipe, TranslationRecipe
from seq2seq.data.batching import PairBatches
from seq2seq.data.parallel import load_parallel
from seq2seq.data.stream import ShardBatches
from seq2seq.data.testsets import file_pair, sacrebleu_test_set
from seq2seq.decoding import DecodeConfig
from seq2seq.ensemble import Ensemble
from seq2seq.metrics import bleu, chrf, perplexity
from seq2seq.models.int8 import quantize_decoder
from seq2seq.models.seq2seq import TrainingLoss
from seq2seq.tasks.base import Evaluation, TestSet, payload_field, saved_recipe
from seq2seq.tasks.common import (
    build_model,
    build_optimizer,
    load_weights,
    resolve_device,
    write_recipe,
)
from seq2seq.tasks.translation_data import (  # (tokenize, train_tokenizers: also seq2seq.tasks's)
    ValidationSet,
    shard_store,
    tokenize,
    tokenizer_sample,
    train_tokenizers,
    train_tokenizers_streamed,
    training_corpora,
    training_table,
    validation_sets,
    write_shard_store,
)
from seq2seq.tokenizer import EOS, Tokenizer
from seq2seq.trainer import Trainer
from seq2seq.translator import Translator

LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}  # inference weights stored in the autocast type


def decode_precision(train_precision: str, device: torch.device) -> str:
    """The precision a model decodes in unless told otherwise. On a CPU its training precision (bf16 for the
    recipes; a model trained in fp16 on a GPU decodes in bf16). On a GPU float32: the recipes' models decode faster
    in it there, since their steps wait on kernel launches and bf16 adds kernels of its own (figures in
    docs/speed.md, "Precision when decoding")."""
    if device.type == "cuda":
        return "fp32"
    return "bf16" if train_precision == "fp16" else train_precision


def translation_training(recipe: Recipe, run_dir: Path, resume: bool, device, rank: int, world: int) -> Trainer:
    """Data, tokenizers, model, optimizer and validation for translation, in that order."""
    t, streamed = recipe.train, recipe.data.stream
    corpora, valid = ([] if streamed else training_corpora(recipe)), validation_sets(recipe)
    if resume:
        saved = checkpoint.load(run_dir / "last.pt")
        src_tok, tgt_tok = tokenizers_from(saved, run_dir / "last.pt")
        target_ids = saved["model"].get("target_ids")  # None: a run over every piece (target_vocabulary: all)
        del saved
    else:  # SentencePiece training is deterministic, so every rank gets the same models
        src_tok, tgt_tok = (train_tokenizers_streamed(recipe) if streamed else
                            train_tokenizers(recipe, *tokenizer_sample(corpora, t.seed)))  # fmt: skip
        if rank == 0:
            write_recipe(run_dir, recipe)
            names = {"spm.model": src_tok} if src_tok is tgt_tok else {"spm.src.model": src_tok, "spm.tgt.model": tgt_tok}
            for name, tok in names.items():  # also inside every checkpoint; these are for other tools
                checkpoint.write_atomic(run_dir / name, tok.proto)
    (run_dir / "cache").mkdir(exist_ok=True)
    if streamed:  # one process per machine writes the shards while the others wait; then each reads its own pools
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            write_shard_store(recipe, src_tok, tgt_tok, run_dir / "cache")
        store = shard_store(recipe, src_tok, tgt_tok, run_dir / "cache")
        if rank == 0:
            tqdm.write(f"training corpus: {len(store):,} pairs of {store.read:,} within data.max_len, "
                       f"{int(store.tgt_len.sum(dtype=np.int64)) + len(store):,} target tokens per epoch, "
                       f"{store.shards} shards in {store.folder}")  # fmt: skip
        data, seen = ShardBatches(store, t.batch_tokens, t.seed, rank, world, recipe.data.pool_pairs), store.target_pieces()
    else:  # (the cache by one process only: ranks must not race on a file)
        cache = run_dir / "cache" if world == 1 else None
        train_ids, mixture = training_table(recipe, corpora, src_tok, tgt_tok, cache)
        data, seen = PairBatches(train_ids, t.batch_tokens, t.seed, rank, world, mixture), target_pieces(train_ids)
    for v in valid:
        v.ids = tokenize(v.table, src_tok, tgt_tok, None)
    if not resume:
        target_ids = target_vocabulary(seen) if recipe.model.target_vocabulary == "seen" else None
    model = build_model(recipe, len(src_tok), len(tgt_tok), target_ids).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=data,
        evaluate=translation_evaluator(valid, src_tok, tgt_tok, recipe, device),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra=TranslationPayload(recipe, {"src": src_tok.proto, "tgt": tgt_tok.proto}, seen).extra(),
        is_main=rank == 0,
        loss=TrainingLoss(t.label_smoothing, recipe.model.scheduled_sampling, recipe.model.sampling_max,
                          recipe.model.sampling_steps),  # fmt: skip
    )
    if resume:
        trainer.resume(run_dir / "last.pt")
    return trainer


def translation_evaluator(valid: list[ValidationSet], src_tok, tgt_tok, recipe: Recipe, device):
    """Validation for translation: exact NLL per token (no label smoothing) and greedy BLEU / chrF of each validation
    set; with several, each one's as loss_<label>, bleu_<label>, ..., and their unweighted means as loss, bleu, ..."""
    batches = [PairBatches(v.ids, recipe.train.batch_tokens, seed=0) for v in valid]

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        precision = decode_precision(recipe.train.precision, torch.device(device))
        dtype = LOW_PRECISION.get(precision)
        # A copy with the weights stored in the autocast type: autocast would re-cast them at every decoder step
        # (greedy over Multi30k's validation set: 1.06 s instead of 1.92 here, the same translations).
        decoder = copy.deepcopy(model).to(dtype) if dtype else model
        translator = Translator(decoder, src_tok, tgt_tok, device, precision, recipe.train.decode_max_ratio)
        scores = [_scores(model, b, translator, v.table, device) for v, b in zip(valid, batches)]
        if len(scores) == 1:
            return scores[0]
        mean = {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
        mean["ppl"] = math.exp(min(mean["loss"], 50.0))  # of the mean loss, capped as metrics.perplexity caps it
        return {**mean, **{f"{k}_{v.label}": value for v, s in zip(valid, scores) for k, value in s.items()}}

    return evaluate


def _scores(model, batches: PairBatches, translator: Translator, table, device) -> dict[str, float]:
    total, count = 0.0, 0
    with torch.inference_mode():
        for _, batch in batches.epoch(0):
            loss, n = model.loss(batch.to(device), label_smoothing=0.0)
            total, count = total + float(loss), count + n
    hyps, references = translator.translate(table["src"]), table["tgt"]
    return {
        "loss": total / max(count, 1),
        "ppl": perplexity(total, count),
        "bleu": bleu(hyps, [references]).value,
        "chrf": chrf(hyps, [references]).value,
    }


def target_pieces(table: datasets.Dataset) -> list[int]:
    """The output shortlist of a model trained on `table` (tokenized): the sorted ids of the pieces that occur on
    its target side, and EOS. A piece never seen as a target only ever had its probability pushed down."""
    ids = np.fromiter(itertools.chain.from_iterable(table["tgt_ids"]), dtype=np.int64)
    return np.union1d(ids, [EOS]).tolist()


def target_vocabulary(seen: list[int]) -> list[int]:
    """A model's target vocabulary (`Seq2Seq` target_ids) from the pieces seen on the training data's target side:
    those and the special pieces, sorted (the specials, 0-3, come first and keep their ids)."""
    return np.union1d(seen, range(EOS + 1)).tolist()


def tokenizers_from(saved: dict, where: str | Path = "the checkpoint") -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a translation checkpoint's payload."""
    return TranslationPayload.read(saved, where).tokenizer_pair()


def load_for_inference(
    run_dirs: str | Path | list, which: str = "best", device: str = "auto", precision: str | None = None,
    shortlist: bool = True, int8_kernel: str | None = None, **kwargs,
) -> Translator:
    """A Translator for one run directory, or an ensemble for several that share the target vocabulary.

    shortlist: greedy search without scores (translate()) takes its argmax over the target pieces seen in training
    only (one model; the Translator's `Shortlist`), from the checkpoint or, for checkpoints written before it kept them, the
    run directory's tokenized training data. Beam search always scores every piece: normalized over the shortlist,
    its scores favoured uncertain steps (label smoothing leaves 1-6% of the mass on unseen pieces, more where the
    model is unsure), 0.05-0.2 BLEU lower on Multi30k val. False: the whole vocabulary everywhere.
    precision: fp32 | bf16 | fp16 (CUDA) | int8 (CPU); None: `decode_precision` of the training precision.
    int8_kernel: with precision "int8", Int8Linear's kernel ("dynamic" or "int_mm"; None: `int8.default_kernel()`)."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    torch_device = resolve_device(device)
    if precision is not None and precision not in DECODE_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(DECODE_PRECISIONS)}")
    if precision == "fp16" and torch_device.type != "cuda":
        raise ConfigError(f"fp16 decoding runs on CUDA, not on {torch_device}: use bf16 (or int8) on the CPU")
    if precision == "int8" and torch_device.type != "cpu":  # the decoder's products in int8: models/int8.py
        raise ConfigError(f"int8 decoding runs on the CPU, not on {torch_device}: add --device cpu, or leave out "
                          "--int8 (float32, the default on a GPU)")
    models, first, short_ids = [], None, None
    for path in paths:
        file = checkpoint.find(path, which)
        saved = checkpoint.load(file)
        payload = TranslationPayload.read(saved, path)
        recipe, (src_tok, tgt_tok) = payload.recipe, payload.tokenizer_pair()
        if first is None:
            first = (recipe, src_tok, tgt_tok)
        elif (src_tok.proto, tgt_tok.proto) != (first[1].proto, first[2].proto):
            raise checkpoint.CheckpointError(f"{path} uses other SentencePiece models than {paths[0]}: cannot ensemble")
        model = build_model(recipe, len(src_tok), len(tgt_tok), saved["model"].get("target_ids"))
        load_weights(model, saved["model"], file)
        if shortlist and len(paths) == 1 and model.target_ids is None:  # a target vocabulary needs no shortlist
            pieces = payload.target_pieces or _cached_target_pieces(Path(path), recipe)
            short_ids = None if pieces is None else torch.tensor(pieces, device=torch_device)
        models.append(model.to(torch_device))
    recipe, src_tok, tgt_tok = first
    kwargs.setdefault("max_len_ratio", recipe.train.decode_max_ratio)
    precision = precision or decode_precision(recipe.train.precision, torch_device)
    if precision == "int8":  # the decoder's products in int8 (quantized from float32), the rest in bf16
        models = [quantize_decoder(m.eval(), int8_kernel).to(torch.bfloat16) for m in models]
    elif precision in LOW_PRECISION:  # store the weights in that type: autocast would re-cast them at every step
        models = [m.to(LOW_PRECISION[precision]) for m in models]
    model = models[0] if len(models) == 1 else Ensemble(models)
    return Translator(model, src_tok, tgt_tok, torch_device, precision, recipe=recipe, shortlist=short_ids, **kwargs)


def _cached_target_pieces(path: Path, recipe: Recipe) -> list[int] | None:
    """target_pieces from the tokenized training data that a run directory keeps in cache/, if it is there."""
    folder, split = (path if path.is_dir() else path.parent) / "cache", recipe.data.train_split
    caches = sorted([*folder.glob(f"{split}.arrow"), *folder.glob(f"{split}-*.arrow")], key=lambda p: p.stat().st_mtime)
    return target_pieces(datasets.Dataset.from_file(str(caches[-1]))) if caches else None


@dataclass(frozen=True)
class TranslationPayload:
    """What a translation checkpoint holds besides the weights."""

    recipe: TranslationRecipe
    tokenizers: dict[str, bytes]  # "src" and "tgt": SentencePiece model protos (one and the same where joint)
    target_pieces: list[int] | None = None  # greedy search's shortlist: the pieces seen on the target side

    def extra(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "tokenizers": dict(self.tokenizers), "target_pieces": self.target_pieces}

    @classmethod
    def read(cls, saved: dict, where: str | Path) -> TranslationPayload:
        return cls(saved_recipe(saved, where, "translation"), payload_field(saved, "tokenizers", where),
                   saved.get("target_pieces"))  # fmt: skip

    def tokenizer_pair(self) -> tuple[Tokenizer, Tokenizer]:
        src = Tokenizer(self.tokenizers["src"])
        return src, src if self.tokenizers["tgt"] == self.tokenizers["src"] else Tokenizer(self.tokenizers["tgt"])


DEFAULT_SPLIT = "test_2016_flickr"


class TranslationTask:
    name = "translation"
    default_split = DEFAULT_SPLIT

    def training(self, recipe: TranslationRecipe, run_dir: Path, resume: bool, device: torch.device, rank: int = 0,
                 world: int = 1) -> Trainer:  # fmt: skip
        return translation_training(recipe, run_dir, resume, device, rank, world)

    def read_payload(self, saved: dict, where: str | Path) -> TranslationPayload:
        return TranslationPayload.read(saved, where)

    def load(self, run_dir: str | Path | list, which: str = "best", device: str = "auto", **options) -> Translator:
        return load_for_inference(run_dir, which, device, **options)

    def evaluate(self, run_dirs: Sequence[Path], test: TestSet, which: str = "best", device: str = "auto",
                 decode: DecodeConfig | None = None, output: Path | None = None,
                 lowercase_tokenized: bool = False) -> Evaluation:  # fmt: skip
        """Translate the test set (an ensemble for several runs) and score it with sacreBLEU. The translations go to
        `output` (default RUN_DIR/hyps.<test set>.<tgt_lang>), replaced only once every sentence is translated."""
        from seq2seq.metrics import all_scores

        decode = decode or DecodeConfig()
        if test.src and test.lines is None:  # misaligned files fail before the model loads
            test = dataclasses.replace(test, lines=file_pair(test.src, test.ref))
        translator = load_for_inference(list(run_dirs), which, device, **decode.load_options())
        name, sources, references = self.sentences(test, translator.recipe)
        start = time.time()
        hyps = translator.translate(sources, decode.beam, decode.batch_size, **decode.settings())
        seconds = max(time.time() - start, 1e-9)
        out = output or Path(run_dirs[0]) / f"hyps.{name.replace('/', '_')}.{translator.recipe.data.tgt_lang}"
        with atomic_output(out) as f:
            f.writelines(h + "\n" for h in hyps)
        models = f"ensemble of {len(run_dirs)}" if len(run_dirs) > 1 else "1 model"
        scores = all_scores(hyps, references, lowercase_tokenized)
        lines = [f"{name}: {len(hyps)} sentences, {search_name(decode)}, {models}, {translator.precision} on "
                 f"{translator.device}, {seconds:.1f} s ({len(hyps) / seconds:.1f} sentences/s); translations in {out}",
                 *map(str, scores)]  # fmt: skip
        return Evaluation({s.name: s.value for s in scores}, "\n".join(lines))

    def sentences(self, test: TestSet, recipe: TranslationRecipe) -> tuple[str, list[str], list[list[str]]]:
        """(name, source lines, reference sets) of a test set; the name labels the output file."""
        d = recipe.data
        if test.src:
            return test.src.name, *(test.lines or file_pair(test.src, test.ref))
        if test.sacrebleu:
            pair = test.langpair or f"{d.src_lang}-{d.tgt_lang}"
            if pair != f"{d.src_lang}-{d.tgt_lang}":
                raise UsageError(f"-l {pair}: the run translates {d.src_lang}-{d.tgt_lang}")
            return test.sacrebleu, *sacrebleu_test_set(test.sacrebleu, pair)
        split = test.split or self.default_split
        table = load_parallel(d.corpus, split, d.src_lang, d.tgt_lang, d.hub_config)
        return split, table["src"], [table["tgt"]]


def search_name(config: DecodeConfig) -> str:
    if config.beam > 1:
        return f"beam {config.beam}, alpha {config.alpha}"
    return "greedy" if config.temperature is None else f"sampling at temperature {config.temperature:g}"
