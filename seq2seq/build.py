"""The composition root: the only module that reads a Recipe and turns it into data, model and trainer."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import torch
import yaml

from seq2seq import checkpoint
from seq2seq.config import ConfigError, Recipe, recipe_from_dict
from seq2seq.data.batching import PairBatches
from seq2seq.data.corpora import corpus_file
from seq2seq.data.parallel import load_parallel
from seq2seq.data.series import (
    Scaler,
    Series,
    Split,
    WindowBatches,
    chronological_split,
    load_series,
    to_tensors,
    windows,
)
from seq2seq.data.text import StreamBatches, Vocabulary, split_lines
from seq2seq.ensemble import Ensemble
from seq2seq.metrics import bleu, chrf, perplexity
from seq2seq.models.lm import LanguageModel
from seq2seq.models.regressor import Regressor
from seq2seq.models.seq2seq import Seq2Seq
from seq2seq.tokenizer import Tokenizer
from seq2seq.trainer import Trainer
from seq2seq.translator import Translator


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for, but torch sees no CUDA GPU; use train.device=cpu")
    if device.type == "cuda" and device.index is None:  # under torchrun, the GPU train.py selected for this rank
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def build_model(recipe: Recipe, src_vocab: int = 0, tgt_vocab: int = 0) -> torch.nn.Module:
    """The task's model; translation needs both vocabulary sizes, the language model `tgt_vocab`."""
    m = recipe.model
    match recipe.task:
        case "translation":
            return Seq2Seq(
                src_vocab, tgt_vocab, m.embedding_size, m.encoder_hidden, m.encoder_layers, m.bidirectional,
                m.decoder_hidden, m.decoder_layers, m.cell, m.attention, m.input_feeding, m.tie_embeddings,
                m.share_embeddings, m.dropout, recipe.train.label_smoothing,
                m.scheduled_sampling, m.sampling_max, m.sampling_steps,
            )  # fmt: skip
        case "regression":
            return Regressor(len(recipe.data.features), m.hidden_sizes, m.cell, m.fc_size, m.dropout)
        case "lm":
            return LanguageModel(
                tgt_vocab, m.embedding_size, m.hidden_size, m.layers, m.cell, m.dropout, m.embedding_dropout,
                m.tie_embeddings,
            )  # fmt: skip
        case _:
            raise ValueError(f"no model for task {recipe.task!r}")


def build_optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = recipe.train
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    return cls(model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)


def train_tokenizers(recipe: Recipe, table: datasets.Dataset) -> tuple[Tokenizer, Tokenizer]:
    tc = recipe.tokenizer
    args = dict(vocab_size=tc.vocab_size, model_type=tc.model_type, character_coverage=tc.character_coverage)
    if tc.joint:
        joint = Tokenizer.train([*table["src"], *table["tgt"]], **args)
        return joint, joint
    return Tokenizer.train(table["src"], **args), Tokenizer.train(table["tgt"], **args)


def tokenize(table: datasets.Dataset, src: Tokenizer, tgt: Tokenizer, cache: Path | None) -> datasets.Dataset:
    """Add `src_ids` and `tgt_ids` columns (a cached `map` when `cache` is given)."""
    if cache is not None and cache.is_file():
        return datasets.Dataset.from_file(str(cache))

    def encode(batch: dict) -> dict:
        return {"src_ids": src.encode(batch["src"]), "tgt_ids": tgt.encode(batch["tgt"])}

    return table.map(
        encode, batched=True, batch_size=2000, cache_file_name=str(cache) if cache else None, desc="tokenizing"
    )


def build_training(recipe: Recipe, run_dir: Path, resume: bool, rank: int = 0, world: int = 1) -> Trainer:
    """Everything `python -m seq2seq.train` needs: seed and threads here, then the task's data, model and trainer."""
    t = recipe.train
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    match recipe.task:
        case "translation":
            return translation_training(recipe, run_dir, resume, device, rank, world)
        case "regression":
            if world > 1:  # the series batches are not sharded; each rank would train on everything
                raise ConfigError("the regression task trains in one process; run it without torchrun")
            return regression_training(recipe, run_dir, resume, device)
        case "lm":
            if world > 1:  # the BPTT streams are not sharded
                raise ConfigError("the lm task trains in one process; run it without torchrun")
            return lm_training(recipe, run_dir, resume, device)
        case _:
            raise ValueError(f"no training for task {recipe.task!r}")


def translation_training(recipe: Recipe, run_dir: Path, resume: bool, device, rank: int, world: int) -> Trainer:
    """Data, tokenizers, model, optimizer and validation for translation, in that order."""
    d, t = recipe.data, recipe.train
    train_table = load_parallel(d.corpus, d.train_split, d.src_lang, d.tgt_lang, d.hub_config)
    valid_table = load_parallel(d.corpus, d.valid_split, d.src_lang, d.tgt_lang, d.hub_config)
    if d.valid_limit:
        valid_table = valid_table.select(range(min(d.valid_limit, len(valid_table))))
    if resume:
        src_tok, tgt_tok = tokenizers_from(checkpoint.load(run_dir / "last.pt"))
    else:  # SentencePiece training is deterministic, so every rank gets the same models
        src_tok, tgt_tok = train_tokenizers(recipe, train_table)
        if rank == 0:
            (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
            names = {"spm.model": src_tok} if src_tok is tgt_tok else {"spm.src.model": src_tok, "spm.tgt.model": tgt_tok}
            for name, tok in names.items():  # also inside every checkpoint; these are for other tools
                (run_dir / name).write_bytes(tok.proto)
    (run_dir / "cache").mkdir(exist_ok=True)
    cache = run_dir / "cache" / f"{d.train_split}.arrow" if world == 1 else None  # ranks must not race on a file
    train_ids = tokenize(train_table, src_tok, tgt_tok, cache)
    train_ids = train_ids.filter(lambda r: 0 < len(r["src_ids"]) <= d.max_len and len(r["tgt_ids"]) <= d.max_len)
    valid_ids = tokenize(valid_table, src_tok, tgt_tok, None)
    model = build_model(recipe, len(src_tok), len(tgt_tok)).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=PairBatches(train_ids, t.batch_tokens, t.seed, rank, world),
        evaluate=translation_evaluator(valid_table["src"], valid_table["tgt"], valid_ids, src_tok, tgt_tok, recipe,
                                       device),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra={"recipe": recipe.to_dict(), "tokenizers": {"src": src_tok.proto, "tgt": tgt_tok.proto}},
        is_main=rank == 0,
    )
    if resume:
        trainer.resume(run_dir / "last.pt")
    return trainer


def translation_evaluator(sources, references, valid_ids, src_tok, tgt_tok, recipe: Recipe, device):
    """Validation for translation: exact NLL per token (no label smoothing) and greedy BLEU / chrF."""
    batches = PairBatches(valid_ids, recipe.train.batch_tokens, seed=0)

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        total, count = 0.0, 0
        with torch.inference_mode():
            for _, batch in batches.epoch(0):
                loss, n = model.loss(batch.to(device), label_smoothing=0.0)
                total, count = total + float(loss), count + n
        translator = Translator(model, src_tok, tgt_tok, device, recipe.train.precision, recipe.train.decode_max_ratio)
        hyps = translator.translate(sources)
        return {
            "loss": total / max(count, 1),
            "ppl": perplexity(total, count),
            "bleu": bleu(hyps, [references]).value,
            "chrf": chrf(hyps, [references]).value,
        }

    return evaluate


def series_split(recipe: Recipe) -> tuple[Series, Split]:
    """The regression recipe's series and its chronological train / valid / test rows."""
    d = recipe.data
    series = load_series(corpus_file(d.corpus, d.file), d.features, d.date_column, d.date_format)
    return series, chronological_split(len(series.dates), d.test_fraction, d.valid_fraction, d.window)


def regression_training(recipe: Recipe, run_dir: Path, resume: bool, device) -> Trainer:
    """Series, split, a scaler fitted on the training rows only, model, optimizer and validation MSE."""
    d, t = recipe.data, recipe.train
    series, split = series_split(recipe)
    scaler = Scaler.fit(d.normalisation, series.values[split.train])
    train_x, train_y = to_tensors(windows(series.values[split.train], d.window), scaler)
    valid_x, valid_y = to_tensors(windows(series.values[split.valid], d.window), scaler)
    if not resume:
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
    model = build_model(recipe).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=WindowBatches(train_x, train_y, d.batch_size, t.seed),
        evaluate=regression_evaluator(valid_x, valid_y, device),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra={"recipe": recipe.to_dict(), "scaler": scaler.state()},
    )
    if resume:
        trainer.resume(run_dir / "last.pt")
    return trainer


def regression_evaluator(x: torch.Tensor, y: torch.Tensor, device):
    """Validation MSE in normalised space, and its skill against persistence (tomorrow = today, i.e. x[:, -1, 0])."""
    persistence_mse = float(((x[:, -1, 0] - y) ** 2).mean())

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with torch.inference_mode():
            pred = torch.cat([model(x[i : i + 1024].to(device)).float().cpu() for i in range(0, len(y), 1024)])
        mse = float(((pred - y) ** 2).mean())
        return {"loss": mse, "rmse": mse**0.5, "skill": 1 - mse / persistence_mse}

    return evaluate


def load_regressor(run_dir: str | Path, which: str = "best") -> tuple[Recipe, Regressor, Scaler]:
    """A trained regression run: its recipe, the model (eval mode, CPU) and the scaler fitted at training time."""
    payload = checkpoint.load(checkpoint.find(run_dir, which))
    recipe = recipe_from_dict(payload["recipe"])
    if recipe.task != "regression":
        raise checkpoint.CheckpointError(f"{run_dir} holds a {recipe.task} run, not a regression run")
    model = build_model(recipe)
    model.load_state_dict(payload["model"])
    return recipe, model.eval(), Scaler.from_state(payload["scaler"])


def lm_training(recipe: Recipe, run_dir: Path, resume: bool, device) -> Trainer:
    """Vocabulary from the training split, BPTT streams, model, optimizer and exact validation perplexity."""
    d, t = recipe.data, recipe.train
    train_lines = split_lines(d.corpus, "train")
    vocab = Vocabulary.from_lines(train_lines, d.tokens)  # deterministic, so a resumed run rebuilds the same one
    if not resume:
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
    model = build_model(recipe, tgt_vocab=len(vocab)).to(device)
    trainer = Trainer(
        model=model,
        optimizer=build_optimizer(recipe, model),
        data=StreamBatches(vocab.stream(train_lines), d.batch_size, d.bptt),
        evaluate=lm_evaluator(vocab.stream(split_lines(d.corpus, "valid"))),
        cfg=t,
        run_dir=run_dir,
        device=device,
        extra={"recipe": recipe.to_dict(), "vocabulary": vocab.tokens},
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
    payload = checkpoint.load(checkpoint.find(run_dir, which))
    recipe = recipe_from_dict(payload["recipe"])
    if recipe.task != "lm":
        raise checkpoint.CheckpointError(f"{run_dir} holds a {recipe.task} run, not a language model")
    vocab = Vocabulary(payload["vocabulary"], recipe.data.tokens)
    model = build_model(recipe, tgt_vocab=len(vocab))
    model.load_state_dict(payload["model"])
    return recipe, model.to(resolve_device(device)).eval(), vocab


def lm_split_perplexity(run_dir: str | Path, split: str, which: str = "best", device: str = "auto") -> tuple[float, int]:
    """Exact perplexity of a trained language model on a split of its corpus, in fp32 -> (perplexity, tokens)."""
    recipe, model, vocab = load_language_model(run_dir, which, device)
    total, count = model.stream_nll(vocab.stream(split_lines(recipe.data.corpus, split)))
    return perplexity(total, count), count


def run_task(run_dir: str | Path, which: str = "best") -> str:
    """The task of a trained run, read from its checkpoint's recipe."""
    return str(checkpoint.load(checkpoint.find(run_dir, which))["recipe"].get("task", "translation"))


# ---------------------------------------------------------------------------------------------- inference


def tokenizers_from(payload: dict) -> tuple[Tokenizer, Tokenizer]:
    protos = payload["tokenizers"]
    src = Tokenizer(protos["src"])
    return src, src if protos["tgt"] == protos["src"] else Tokenizer(protos["tgt"])


def load_for_inference(
    run_dirs: str | Path | list, which: str = "best", device: str = "auto", precision: str | None = None, **kwargs
) -> Translator:
    """A Translator for one run directory, or an ensemble for several that share the target vocabulary."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    torch_device = resolve_device(device)
    models, first = [], None
    for path in paths:
        payload = checkpoint.load(checkpoint.find(path, which))
        recipe = recipe_from_dict(payload["recipe"])
        src_tok, tgt_tok = tokenizers_from(payload)
        if first is None:
            first = (recipe, src_tok, tgt_tok)
        elif (src_tok.proto, tgt_tok.proto) != (first[1].proto, first[2].proto):
            raise checkpoint.CheckpointError(f"{path} uses other SentencePiece models than {paths[0]}: cannot ensemble")
        model = build_model(recipe, len(src_tok), len(tgt_tok))
        model.load_state_dict(payload["model"])
        models.append(model.to(torch_device))
    recipe, src_tok, tgt_tok = first
    kwargs.setdefault("max_len_ratio", recipe.train.decode_max_ratio)
    precision = precision or recipe.train.precision
    model = models[0] if len(models) == 1 else Ensemble(models)
    return Translator(model, src_tok, tgt_tok, torch_device, precision, recipe=recipe, **kwargs)
