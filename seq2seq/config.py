"""Recipes: YAML files validated once into frozen, typed dataclasses.

Every default lives here and only here, and each field's comment (beside it, or the lines right above it) is its
documentation: scripts/recipe_docs.py generates docs/recipes.md from them. A recipe may leave a key out (the default
applies) but may not name a key that does not exist, or give it a value of the wrong type or out of range: all fail
before any work starts, naming the key.

    recipe = load_recipe("recipes/en-fr.yaml", ["train.max_steps=200", "model.decoder_hidden=256"])

A recipe may start from another one (`base: en-fr.yaml`, relative to its own folder) and give only what differs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DECODE_PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # what a trained model decodes in (fp16: CUDA; int8: CPU)
DEFAULT_TASK = "translation"  # a recipe's task where it names none
MIN_VOCAB = 8  # the four special pieces (pad, unk, bos, eos) and a few to learn
DEVICES = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
EPOCHS = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*epochs?\s*")  # train.valid_every: "1 epoch", "0.5 epochs"
_repr = reprlib.Repr()  # values in messages: a huge one stays short
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 60, 60
_show = _repr.repr


class ConfigError(ValueError):
    """A recipe or an override is wrong; the message says what and what would be right."""


def _check_range(cfg: Any, section: str, interval: str, *names: str) -> None:
    """Each field of `names` (a number or a tuple of numbers) must be finite and within `interval`, written as in
    the message: "[0, 1)", "(0, 1]", ">= 1", "> 0"."""
    for name in names:
        value = getattr(cfg, name)
        if not all(_within(v, interval) for v in (value if isinstance(value, tuple) else (value,))):
            where = f"in {interval}" if interval[0] in "[(" else interval
            raise ConfigError(f"{section}.{name} must be {where}, got {_show(value)}")


def _within(v: float, interval: str) -> bool:
    if isinstance(v, float) and not math.isfinite(v):
        return False
    if interval[0] in "[(":
        lo, hi = (_number(x) for x in interval[1:-1].split(","))
        return (lo <= v if interval[0] == "[" else lo < v) and (v <= hi if interval[-1] == "]" else v < hi)
    op, bound = interval.split()
    return v >= _number(bound) if op == ">=" else v > _number(bound)


def _number(text: str) -> float:
    base, _, power = text.strip().partition("**")  # "2**63"
    return float(base) ** int(power) if power else float(base)


def _check_text(cfg: Any, section: str, *names: str) -> None:
    """Each field of `names` (a string or a tuple of strings) must be non-empty."""
    for name in names:
        value = getattr(cfg, name)
        if not all(v.strip() for v in (value if isinstance(value, tuple) else (value,))):
            raise ConfigError(f"{section}.{name} must not be empty, got {_show(value)}")


def _epochs(valid_every: int | str) -> float | None:
    """train.valid_every as a number of epochs ("2 epochs" -> 2.0), or None for a number of steps."""
    if isinstance(valid_every, int):
        if valid_every < 1:
            raise ConfigError(f"train.valid_every must be >= 1 step, got {valid_every}")
        return None
    match = EPOCHS.fullmatch(valid_every)
    if not match or float(match[1]) <= 0:
        raise ConfigError(f'train.valid_every must be a number of steps (500) or of epochs ("1 epoch", "2 epochs", '
                          f'"0.5 epoch"), got {_show(valid_every)}')  # fmt: skip
    return float(match[1])


@dataclass(frozen=True)
class DataConfig:
    # multi30k | tatoeba (local or verified download), a folder of aligned text files (FOLDER/train.en,
    # FOLDER/train.fr, one sentence per line), else a Hugging Face hub dataset id; a list of them ([multi30k, tatoeba])
    # trains on their mixture, each corpus drawn from by its weight (data.weights)
    corpus: str | tuple[str, ...] = "multi30k"
    # One per corpus, in data.corpus's order: the pairs drawn from it per epoch, as a multiple of its size (1 = each
    # pair once; 2 = twice; 0.5 = half of them, drawn anew each epoch from train.seed); the tokenizer is trained on
    # the first epoch's draw. Left out (null): 1 for every corpus
    weights: tuple[float, ...] | None = None
    hub_config: str = ""  # hub datasets only, e.g. "fr-en" for wmt14
    src_lang: str = "en"  # source language: the corpus's file suffix or the hub dataset's column
    tgt_lang: str = "fr"  # target language
    train_split: str = "train"  # the split trained on, in every corpus of data.corpus
    # The split validated on (validation metric, early stopping and the plateau schedule), or a list of them. A split
    # may name its corpus, corpus/split (tatoeba/val); an unqualified one is validated in each corpus of data.corpus.
    # With several validation sets each is logged with its own keys (bleu_multi30k, loss_tatoeba, ...; corpus_split
    # where a corpus has two), and loss, ppl, bleu and chrf are their unweighted means (ppl: exp of the mean loss)
    valid_split: str | tuple[str, ...] = "val"
    max_len: int = 100  # training pairs with a side longer than this many pieces are dropped
    valid_limit: int = 0  # validate on the first N pairs only (0 = the whole split)
    # Read the training corpus from disk instead of holding it in memory: tokenized once into shards under
    # RUN_DIR/cache, then batched one pool of shards at a time (docs/large-corpora.md). One corpus only
    stream: bool = False
    shard_pairs: int = 100_000  # data.stream: pairs per shard (torchrun: each rank reads whole shards of its own)
    pool_pairs: int = 1_000_000  # data.stream: pairs sorted and batched together, from shards spread over the corpus

    def __post_init__(self) -> None:
        _check_text(self, "data", "corpus", "src_lang", "tgt_lang", "train_split", "valid_split")
        _check_range(self, "data", ">= 1", "max_len")
        _check_range(self, "data", ">= 0", "valid_limit")
        if self.weights is not None:
            _check_range(self, "data", "> 0", "weights")
        _check_range(self, "data", ">= 1", "shard_pairs", "pool_pairs")
        corpora = (self.corpus,) if isinstance(self.corpus, str) else self.corpus
        if self.stream and len(corpora) > 1:
            raise ConfigError(f"data.stream reads one corpus from disk, but data.corpus lists {len(corpora)} "
                              f"({', '.join(corpora)}): stream one corpus, or set data.stream: false to mix them "
                              "in memory")  # fmt: skip
        if len(set(corpora)) < len(corpora):
            raise ConfigError(f"data.corpus names a corpus twice ({', '.join(corpora)}): give each once, with a "
                              f"weight (data.weights) for how often it is drawn from")  # fmt: skip
        if self.weights is not None and len(self.weights) != len(corpora):
            given = f"{len(self.weights)} weight{'s' if len(self.weights) > 1 else ''}"
            raise ConfigError(f"data.weights gives {given} for {len(corpora)} corpora ({', '.join(corpora)}): one "
                              f"per corpus of data.corpus, in its order")  # fmt: skip


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000  # SentencePiece pieces, the four special ones included (a small corpus may get fewer)
    model_type: Literal["bpe", "unigram", "char", "word"] = "bpe"  # SentencePiece's segmentation algorithm
    joint: bool = True  # one model for source and target (needed to share embeddings)
    character_coverage: float = 1.0  # the fraction of the training characters the pieces cover; the rest is <unk>

    def __post_init__(self) -> None:
        _check_range(self, "tokenizer", f">= {MIN_VOCAB}", "vocab_size")
        _check_range(self, "tokenizer", "(0, 1]", "character_coverage")


@dataclass(frozen=True)
class TranslationModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"  # the recurrent cell of encoder and decoder
    embedding_size: int = 256  # source and target embeddings
    encoder_layers: int = 2  # stacked encoder layers
    encoder_hidden: int = 256  # encoder units per layer and direction
    bidirectional: bool = True  # a bidirectional encoder
    decoder_layers: int = 2  # stacked decoder layers
    decoder_hidden: int = 512  # decoder units per layer (also the attention size)
    attention: Literal["bahdanau", "luong"] = "bahdanau"  # additive (Bahdanau) or general (Luong) attention
    # Feed the previous attentional output into the next decoder step; without it the decoder runs over the whole
    # target in one fused call (docs/experiments.md, "Input feeding")
    input_feeding: bool = True
    # GNMT-style: attend from the bottom decoder layer and feed the context into the layers above; keeps the
    # fused decoder (needs input_feeding false and decoder_layers >= 2)
    context_feeding: bool = False
    # The decoder's initial state: tanh of a linear map of the encoder's last states (true), or zeros (false)
    bridge: bool = True
    tie_embeddings: bool = False  # target input embeddings == output projection
    share_embeddings: bool = False  # encoder and decoder embeddings are one matrix (needs tokenizer.joint)
    # The decoder's vocabulary: "all" the tokenizer's pieces, or "seen": the pieces that occur on the target side of
    # the training data and the four special ones, as in fairseq's and Joey NMT's target dictionaries: a smaller
    # output layer, hence faster training (docs/experiments.md, "Target vocabulary")
    target_vocabulary: Literal["all", "seen"] = "all"
    dropout: float = 0.3  # on embeddings, between layers and on the attentional output
    # Scheduled sampling (Bengio et al. 2015): in training, each decoder input is the model's own previous
    # prediction with probability p(step), else the reference token
    scheduled_sampling: Literal["off", "linear", "inverse_sigmoid"] = "off"
    sampling_max: float = 0.25  # the largest p reached
    sampling_steps: int = 4000  # linear: steps to ramp p from 0 to sampling_max; inverse_sigmoid: its midpoint

    def __post_init__(self) -> None:
        _check_range(self, "model", ">= 1", "embedding_size", "encoder_layers", "encoder_hidden", "decoder_layers",
                     "decoder_hidden", "sampling_steps")  # fmt: skip
        _check_range(self, "model", "[0, 1)", "dropout")
        _check_range(self, "model", "[0, 1]", "sampling_max")
        if self.context_feeding and (self.input_feeding or self.decoder_layers < 2):
            raise ConfigError("model.context_feeding needs model.input_feeding: false and model.decoder_layers >= 2")
        if self.share_embeddings and self.target_vocabulary != "all":
            raise ConfigError("model.share_embeddings needs model.target_vocabulary: all (one matrix for both sides)")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1  # torch's seed and the batch order's
    device: str = "auto"  # auto (CUDA if torch sees a GPU) | cpu | cuda | cuda:N | mps
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"  # autocast dtype; fp16 only on CUDA
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # the optimizer
    lr: float = 1e-3  # the peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # adam | adamw: decay rates of the moment estimates
    momentum: float = 0.0  # sgd: the momentum factor
    weight_decay: float = 0.0  # L2 penalty (adam, sgd) or decoupled decay (adamw)
    schedule: Literal["constant", "plateau", "inverse_sqrt", "budget"] = "plateau"  # the lr after the warm-up
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps (0 = none)
    decay_start: float = 0.0  # budget: the fraction of the budget after which the lr falls linearly to min_lr
    plateau_factor: float = 0.5  # plateau: multiply the lr by this when validation stops improving ...
    plateau_patience: int = 1  # ... for this many validations in a row
    min_lr: float = 1e-5  # the floor of every schedule (lr itself where that is lower)
    clip_norm: float = 1.0  # gradient norm clipping (0 = no clipping)
    label_smoothing: float = 0.1  # translation: training loss only (validation loss is plain NLL)
    batch_tokens: int = 4096  # translation: target tokens per batch (padding included)
    max_steps: int = 0  # training steps (0 = no limit)
    max_epochs: int = 0  # passes over the training data (0 = no limit)
    max_minutes: float = 0.0  # wall-clock training budget (0 = no limit); validation time counts
    # Between validations (and checkpoints): a number of steps (500), or of epochs ("1 epoch", "0.5 epoch")
    valid_every: int | str = 500
    # What early stopping, best.pt and the plateau schedule follow: validation BLEU (translation) or loss
    valid_metric: Literal["bleu", "loss"] = "bleu"
    early_stopping: int = 0  # stop after this many validations without improvement (0 = never)
    # Also keep the weights of the last N validations as step-<step>.pt, and their mean as averaged.pt when
    # training ends (seq2seq-average; decode with --checkpoint averaged). 0 = none
    keep_checkpoints: int = 0
    # translation: validation decoding stops at this many pieces per source one (+10); also the default of
    # decoding the run later (DecodeConfig.max_len_ratio, --max-len-ratio)
    decode_max_ratio: float = 1.5
    log_every: int = 50  # steps between progress and metrics lines
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars to RUN_DIR/tensorboard (pip install tensorboard)

    def __post_init__(self) -> None:
        _check_range(self, "train", "[0, 2**63)", "seed")
        _check_range(self, "train", "> 0", "lr", "decode_max_ratio")
        _check_range(self, "train", ">= 0", "weight_decay", "min_lr", "clip_norm", "warmup_steps",
                     "max_steps", "max_epochs", "max_minutes", "early_stopping", "keep_checkpoints")  # fmt: skip
        _check_range(self, "train", ">= 1", "batch_tokens", "plateau_patience", "log_every")
        _check_range(self, "train", "[0, 1)", "betas", "momentum", "decay_start", "label_smoothing")
        _check_range(self, "train", "(0, 1)", "plateau_factor")
        if not DEVICES.fullmatch(self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got {_show(self.device)}")
        _epochs(self.valid_every)
        if self.schedule == "budget" and not (self.max_minutes or self.max_steps):
            raise ConfigError("train.schedule budget decays the lr over train.max_minutes or train.max_steps; set one")

    def resolve_epochs(self, batches_per_epoch: int) -> TrainConfig:
        """This config with valid_every in steps: "2 epochs" of 300 batches -> 600 (rounded, at least 1)."""
        epochs = _epochs(self.valid_every)
        steps = self.valid_every if epochs is None else max(1, round(epochs * batches_per_epoch))
        return dataclasses.replace(self, valid_every=steps)


@dataclass(frozen=True)
class SeriesDataConfig:
    corpus: str = "sp500"  # named corpus (seq2seq/data/corpora.py) holding the CSV
    file: str = "sp500.csv"  # the CSV file in the corpus
    date_column: str = "Date"  # the CSV column holding the dates
    date_format: str = "%d-%m-%y"  # explicit: the lab's file has DD-MM-YY dates
    features: tuple[str, ...] = ("Close",)  # CSV columns fed to the model; the first is the one predicted
    window: int = 50  # input steps; the label is the next value of features[0]
    test_fraction: float = 0.15  # the last rows, never used for training or model selection
    valid_fraction: float = 0.1  # of the rows before the test span, taken from their end
    normalisation: Literal["window", "global"] = "window"  # p_i / p_0 - 1 per window | z-score fit on train rows
    batch_size: int = 32  # windows per step

    def __post_init__(self) -> None:
        _check_text(self, "data", "corpus", "file", "date_column", "date_format", "features")
        _check_range(self, "data", ">= 2", "window")
        _check_range(self, "data", ">= 1", "batch_size")
        _check_range(self, "data", "(0, 1)", "test_fraction", "valid_fraction")


@dataclass(frozen=True)
class RegressorModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"  # the recurrent cell
    hidden_sizes: tuple[int, ...] = (50, 100)  # one stacked layer per entry
    fc_size: int = 32  # the fully connected (ReLU) layer between the last recurrent state and the output
    dropout: float = 0.0  # between recurrent layers and before the fully connected layer

    def __post_init__(self) -> None:
        _check_range(self, "model", ">= 1", "hidden_sizes", "fc_size")
        _check_range(self, "model", "[0, 1)", "dropout")


@dataclass(frozen=True)
class LMDataConfig:
    corpus: Literal["ptb", "wikitext-2"] = "ptb"  # named corpus with train / valid / test splits
    # word: the corpus's own vocabulary; char: its characters; sentencepiece: pieces trained on the training split
    tokens: Literal["word", "char", "sentencepiece"] = "word"
    vocab_size: int = 10000  # sentencepiece only: pieces in the model
    bptt: int = 35  # truncated backpropagation through time: steps per batch; the state carries across batches
    batch_size: int = 20  # parallel streams the training split is cut into

    def __post_init__(self) -> None:
        _check_range(self, "data", f">= {MIN_VOCAB}", "vocab_size")
        _check_range(self, "data", ">= 1", "bptt", "batch_size")


@dataclass(frozen=True)
class LMModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"  # the recurrent cell
    embedding_size: int = 200  # token embeddings
    hidden_size: int = 200  # units per layer
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # between recurrent layers and on the last layer's outputs
    embedding_dropout: float = 0.0  # on the input embeddings
    tie_embeddings: bool = False  # output projection = input embeddings (needs hidden_size == embedding_size)
    recurrence: Literal["fp32", "autocast"] = "fp32"  # the recurrence's precision under train.precision bf16/fp16

    def __post_init__(self) -> None:
        _check_range(self, "model", ">= 1", "embedding_size", "hidden_size", "layers")
        _check_range(self, "model", "[0, 1)", "dropout", "embedding_dropout")
        if self.tie_embeddings and self.hidden_size != self.embedding_size:
            raise ConfigError(f"model.tie_embeddings needs model.hidden_size == model.embedding_size, got "
                              f"{self.hidden_size} and {self.embedding_size}")  # fmt: skip


@dataclass(frozen=True)
class RuntimeConfig:
    """Process-wide settings of the command that runs a recipe, applied once at its start by seq2seq/runtime.py;
    the command-line option of the same name (--threads, --allocator, --tanh, --onednn-cache, --int8-kernel) wins
    over the recipe. They change speed and memory, and results at most by rounding."""

    threads: int = 0  # CPU intra-op threads (0 = torch's default)
    # reuse: glibc serves large blocks from the heap and keeps freed memory (faster steps, more resident memory;
    # docs/speed.md) | system: malloc as it is
    allocator: Literal["reuse", "system"] = "reuse"
    # float32 tanh on the CPU: native (torch.tanh) | sigmoid (as 2 sigmoid(2x) - 1) | auto: sigmoid where torch's
    # tanh is MKL's on an x86 CPU that is not Intel's (docs/speed.md, "tanh as sigmoids")
    tanh: Literal["auto", "native", "sigmoid"] = "auto"
    # Kernels oneDNN keeps compiled (ONEDNN_PRIMITIVE_CACHE_CAPACITY; a value already in the environment wins;
    # docs/speed.md); 0 = oneDNN's own default, 1,024
    onednn_cache: int = 8192
    # Int8 decoding's matrix products: dynamic (torch's dynamic quantized linear; needs VNNI) | int_mm
    # (torch._int_mm) | auto: dynamic where it runs, else int_mm
    int8_kernel: Literal["auto", "dynamic", "int_mm"] = "auto"

    def __post_init__(self) -> None:
        _check_range(self, "runtime", ">= 0", "threads", "onednn_cache")


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. `recipe_from_dict` returns the task's subclass (TranslationRecipe, LMRecipe,
    RegressionRecipe), whose data, tokenizer and model sections carry their own types."""

    name: str  # the run's name, hence its directory runs/<name>: a plain file name
    task: str  # translation | lm | regression
    data: Any  # the task's data section
    tokenizer: Any  # the task's tokenizer section, None for tasks without one
    model: Any  # the task's model section
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # process-wide settings (every task)

    def __post_init__(self) -> None:
        if not self.name.strip() or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise ConfigError(f"name must be a plain file name (it becomes runs/<name>), got {_show(self.name)}")
        if self.train.precision == "fp16" and self.train.device == "cpu":  # `auto` is checked once it is resolved
            raise ConfigError("train.precision fp16 needs train.device: cuda; on a CPU use bf16 or fp32")

    def to_dict(self) -> dict[str, Any]:
        """Plain values that `recipe_from_dict` reads back; sections a task does not have (None) are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class TranslationRecipe(Recipe):
    data: DataConfig
    tokenizer: TokenizerConfig
    model: TranslationModelConfig

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.share_embeddings and not self.tokenizer.joint:
            raise ConfigError("model.share_embeddings needs tokenizer.joint: true (one vocabulary for both sides)")


@dataclass(frozen=True)
class LMRecipe(Recipe):
    data: LMDataConfig
    tokenizer: None
    model: LMModelConfig


@dataclass(frozen=True)
class RegressionRecipe(Recipe):
    data: SeriesDataConfig
    tokenizer: None
    model: RegressorModelConfig


# Each task's recipe type and the types of its sections; a task without a tokenizer section maps it to None.
RECIPES: dict[str, type[Recipe]] = {"translation": TranslationRecipe, "regression": RegressionRecipe, "lm": LMRecipe}
TASKS: dict[str, dict[str, type | None]] = {
    "translation": {"data": DataConfig, "tokenizer": TokenizerConfig, "model": TranslationModelConfig},
    "regression": {"data": SeriesDataConfig, "tokenizer": None, "model": RegressorModelConfig},
    "lm": {"data": LMDataConfig, "tokenizer": None, "model": LMModelConfig},
}


# --------------------------------------------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: typing.Sequence[str] = (), saved: bool = False) -> Recipe:
    """Read a YAML recipe (and its bases), apply dotted `key=value` overrides, validate everything. saved: the file
    is a run's recipe.yaml (`recipe_from_dict`)."""
    path = Path(path)
    raw = _read_with_bases(path, ())
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    return recipe_from_dict(raw, saved)


def _read_with_bases(path: Path, children: tuple[Path, ...]) -> dict[str, Any]:
    """The recipe at `path` merged onto its base's, and so on up the chain; `children` led here (base: path)."""
    if not path.is_file():
        problem = "is a folder, not a recipe file" if path.is_dir() else "does not exist"
        raise ConfigError(f"recipe {children[-1]}: its base {path} {problem}" if children
                          else f"recipe {path} {problem}")  # fmt: skip
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"recipe {path}: base must name a recipe file, relative to this one's folder "
                          f"(base: en-fr.yaml), got {_show(base)}")  # fmt: skip
    chain, base_path = (*children, path), path.parent / base
    if base_path.resolve() in {p.resolve() for p in chain}:
        raise ConfigError(f"recipe bases form a cycle: {' -> '.join(str(p) for p in (*chain, base_path))}")
    inherited = _read_with_bases(base_path, chain)
    inherited.pop("name", None)  # a recipe's name is its own (by default its file name)
    return _merge(inherited, raw)


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `base`, mapping by mapping: a section lists only the keys it changes (an empty one, none)."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(out.get(key), dict) and (value is None or isinstance(value, dict)):
            out[key] = _merge(out[key], value or {})
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})"
                          ) from None  # fmt: skip
    except OSError as e:
        raise ConfigError(f"recipe {path} cannot be read: {e.strerror or e}") from None
    raw = _parse_yaml(text, f"recipe {path}")
    if raw is None:
        raise ConfigError(f"recipe {path} is empty; a recipe gives at least its task (task: lm) or a recipe to "
                          f"start from (base: en-fr.yaml): see docs/recipes.md")  # fmt: skip
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(raw).__name__}")
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, where plain YAML keeps the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden
                continue
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            try:
                if key in lines:
                    where = f"on line {line}" if lines[key] == line else f"on lines {lines[key]} and {line}"
                    raise yaml.YAMLError(f"key {_show(key)} is given twice, {where}")
                lines[key] = line
            except TypeError:  # an unhashable key: SafeLoader's error names it
                break
        return super().construct_mapping(node, deep)


# YAML 1.1 reads 1e-5 as a string (it wants 1.0e-5); a recipe means the number, as YAML 1.2 and Python do
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _parse_yaml(text: str, what: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or str(e)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{what} is not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`train.max_steps=200` -> raw["train"]["max_steps"] = 200 (the value is parsed as YAML)."""
    key, sep, value = item.partition("=")
    parts = [p.strip() for p in key.split(".")]
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.max_steps=200")
    if len(parts) > 2:
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:2])} is not a section; recipe keys are section.key "
                          f"(train.max_steps=200), or name and task")  # fmt: skip
    if parts[0] == "base":
        raise ConfigError(f"override {item!r}: a recipe's base is read from its file only")
    node = raw
    if len(parts) == 2:
        if raw.get(parts[0]) is None:
            raw[parts[0]] = {}
        node = raw[parts[0]]
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {parts[0]!r} is not a section")
    node[parts[-1]] = _parse_yaml(value, f"override {item!r}") if value.strip() else ""


def recipe_from_dict(raw: dict[str, Any], saved: bool = False) -> Recipe:
    """The validated recipe of plain values. saved: `raw` is a trained run's recipe (recipe.yaml, a checkpoint's),
    which may hold keys that older versions wrote and that no longer have a meaning for loading it."""
    raw = _without_moved_keys(raw, saved)
    task = raw.get("task", DEFAULT_TASK)
    if not isinstance(task, str) or task not in TASKS:
        near = difflib.get_close_matches(str(task), list(TASKS), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"unknown task {_show(task)}; choose one of {sorted(TASKS)}{hint}")
    types_ = {**TASKS[task], "train": TrainConfig, "runtime": RuntimeConfig}
    _check_keys(raw, ["name", "task", *(k for k, v in types_.items() if v is not None)], prefix="")
    sections = {name: _build(cls, {} if raw.get(name) is None else raw[name], name) if cls else None
                for name, cls in types_.items()}  # fmt: skip
    return RECIPES[task](name=_coerce(raw.get("name"), str, "name"), task=task, **sections)


# Keys that moved to another section: a recipe that gives them is told where they went. A saved recipe may hold
# them (older versions wrote every default); they are dropped there, since they were process settings of the
# machine that trained, not of the model.
MOVED_KEYS = {("train", "threads"): "runtime.threads"}


def _without_moved_keys(raw: dict[str, Any], saved: bool) -> dict[str, Any]:
    for (section, key), new in MOVED_KEYS.items():
        values = raw.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        if not saved and values[key] not in (0, None):
            raise ConfigError(f"{section}.{key} is now {new}: give {new}={values[key]} (or the option "
                              f"--{new.split('.')[-1]} {values[key]})")  # fmt: skip
        raw = {**raw, section: {k: v for k, v in values.items() if k != key}}
    return raw


def _check_keys(given: dict[str, Any], valid: list[str], prefix: str) -> None:
    for key in given:
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")


def _build(cls: type, values: Any, section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section '{section}' must be a mapping, got {_show(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, list(fields), prefix=f"{section}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`; ints are accepted where floats are expected, floats must be finite."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            given = value if isinstance(value, str) else _show(value)
            near = difflib.get_close_matches(given, [str(c) for c in choices], n=1)
            hint_txt = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{key} must be one of {list(choices)}, got {_show(value)}{hint_txt}")
        return value
    if origin in (typing.Union, types.UnionType):  # the first type that takes the value
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return None
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be of type {' or '.join(a.__name__ for a in args)}, got {_show(value)}")
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any non-empty length
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{key} must be a non-empty list, got {_show(value)}")
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {_show(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e308 else math.inf  # (an int past float's range: inf)
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {_show(value)}")
        return number
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {_show(value)} ({type(value).__name__})")
    return value
