"""Recipes: YAML files validated once into frozen, typed dataclasses.

Every default lives here and only here. A recipe may leave a key out (the default applies) but may not name a key
that does not exist or give it a value of the wrong type: both fail before any work starts, naming the key and the
nearest valid one.

    recipe = load_recipe("recipes/en-fr.yaml", ["train.max_steps=200", "model.decoder_hidden=256"])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DECODE_PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # what a trained model decodes in (fp16: CUDA; int8: CPU)


class ConfigError(ValueError):
    """A recipe or an override is wrong; the message says what and what would be right."""


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "multi30k"  # multi30k | tatoeba (local or verified download), else a Hugging Face hub dataset id
    hub_config: str = ""  # hub datasets only, e.g. "fr-en" for wmt14
    src_lang: str = "en"
    tgt_lang: str = "fr"
    train_split: str = "train"
    valid_split: str = "val"
    max_len: int = 100  # training pairs with a side longer than this many pieces are dropped
    valid_limit: int = 0  # validate on the first N pairs only (0 = the whole split)


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000
    model_type: Literal["bpe", "unigram", "char", "word"] = "bpe"
    joint: bool = True  # one model for source and target (needed to share embeddings)
    character_coverage: float = 1.0


@dataclass(frozen=True)
class TranslationModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"
    embedding_size: int = 256
    encoder_layers: int = 2
    encoder_hidden: int = 256  # per direction
    bidirectional: bool = True
    decoder_layers: int = 2
    decoder_hidden: int = 512
    attention: Literal["bahdanau", "luong"] = "bahdanau"
    input_feeding: bool = True
    # GNMT-style: attend from the bottom decoder layer and feed the context into the layers above; keeps the
    # fused decoder (needs input_feeding false and decoder_layers >= 2)
    context_feeding: bool = False
    # The decoder's initial state: tanh of a linear map of the encoder's last states (true), or zeros (false)
    bridge: bool = True
    tie_embeddings: bool = False  # target input embeddings == output projection
    share_embeddings: bool = False  # encoder and decoder embeddings are one matrix (needs tokenizer.joint)
    # The decoder's vocabulary: "all" the tokenizer's pieces, or "seen": the pieces that occur on the target side of
    # the training data and the four special ones (fairseq's and Joey NMT's target dictionary: 5,489 of 8,000
    # pieces on Multi30k en-fr, training 10% faster; its effect on BLEU is not settled, README Speed, session 12)
    target_vocabulary: Literal["all", "seen"] = "all"
    dropout: float = 0.3
    # Scheduled sampling (Bengio et al. 2015): in training, each decoder input is the model's own previous
    # prediction with probability p(step), else the reference token. off | linear | inverse_sigmoid
    scheduled_sampling: Literal["off", "linear", "inverse_sigmoid"] = "off"
    sampling_max: float = 0.25  # the largest p reached
    sampling_steps: int = 4000  # linear: steps to ramp p from 0 to sampling_max; inverse_sigmoid: its midpoint

    def __post_init__(self) -> None:
        if not 0.0 <= self.sampling_max <= 1.0:
            raise ConfigError(f"model.sampling_max must be in [0, 1], got {self.sampling_max}")
        for name in ("embedding_size", "encoder_layers", "encoder_hidden", "decoder_layers", "decoder_hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.context_feeding and (self.input_feeding or self.decoder_layers < 2):
            raise ConfigError("model.context_feeding needs model.input_feeding: false and model.decoder_layers >= 2")
        if self.share_embeddings and self.target_vocabulary != "all":
            raise ConfigError("model.share_embeddings needs model.target_vocabulary: all (one matrix for both sides)")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"  # autocast dtype; fp16 only on CUDA
    threads: int = 0  # CPU intra-op threads (0 = torch's default)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)  # adam | adamw
    momentum: float = 0.0  # sgd
    weight_decay: float = 0.0
    schedule: Literal["constant", "plateau", "inverse_sqrt", "budget"] = "plateau"
    warmup_steps: int = 0
    decay_start: float = 0.0  # budget: the fraction of the budget after which the lr falls linearly to min_lr
    plateau_factor: float = 0.5  # plateau: multiply the lr by this when validation stops improving ...
    plateau_patience: int = 1  # ... for this many validations in a row
    min_lr: float = 1e-5
    clip_norm: float = 1.0  # 0 = no clipping
    label_smoothing: float = 0.1
    batch_tokens: int = 4096  # target tokens per batch (padding included)
    max_steps: int = 0  # 0 = no limit
    max_epochs: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # wall-clock training budget (0 = no limit); validation time counts
    valid_every: int = 500  # steps between validations (and checkpoints)
    valid_metric: Literal["bleu", "loss"] = "bleu"
    early_stopping: int = 0  # stop after this many validations without improvement (0 = never)
    decode_max_ratio: float = 1.5  # validation decoding stops at this many target pieces per source piece (+10)
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.batch_tokens < 1:
            raise ConfigError(f"train.batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.valid_every < 1:
            raise ConfigError(f"train.valid_every must be >= 1, got {self.valid_every}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.schedule == "budget" and not (self.max_minutes or self.max_steps):
            raise ConfigError("train.schedule budget decays the lr over train.max_minutes or train.max_steps; set one")
        if not 0.0 <= self.decay_start < 1.0:
            raise ConfigError(f"train.decay_start must be in [0, 1), got {self.decay_start}")


@dataclass(frozen=True)
class SeriesDataConfig:
    corpus: str = "sp500"  # named corpus (seq2seq/data/corpora.py) holding the CSV
    file: str = "sp500.csv"
    date_column: str = "Date"
    date_format: str = "%d-%m-%y"  # explicit: the lab's file has DD-MM-YY dates
    features: tuple[str, ...] = ("Close",)  # CSV columns fed to the model; the first is the one predicted
    window: int = 50  # input steps; the label is the next value of features[0]
    test_fraction: float = 0.15  # the last rows, never used for training or model selection
    valid_fraction: float = 0.1  # of the rows before the test span, taken from their end
    normalisation: Literal["window", "global"] = "window"  # p_i / p_0 - 1 per window | z-score fit on train rows
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("data.features must name at least one CSV column")
        if self.window < 2 or self.batch_size < 1:
            raise ConfigError(f"data.window must be >= 2 and data.batch_size >= 1, got {self.window}, "
                              f"{self.batch_size}")  # fmt: skip
        if not 0.0 < self.test_fraction < 1.0 or not 0.0 < self.valid_fraction < 1.0:
            raise ConfigError("data.test_fraction and data.valid_fraction must be in (0, 1)")


@dataclass(frozen=True)
class RegressorModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"
    hidden_sizes: tuple[int, ...] = (50, 100)  # one stacked layer per entry
    fc_size: int = 32  # the fully connected (ReLU) layer between the last recurrent state and the output
    dropout: float = 0.0  # between recurrent layers and before the fully connected layer

    def __post_init__(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1 or self.fc_size < 1:
            raise ConfigError(f"model.hidden_sizes and model.fc_size must be >= 1, got {list(self.hidden_sizes)}, "
                              f"{self.fc_size}")  # fmt: skip
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class LMDataConfig:
    corpus: Literal["ptb", "wikitext-2"] = "ptb"  # named corpus with train / valid / test splits
    # word: the corpus's own vocabulary; char: its characters; sentencepiece: pieces trained on the training split
    tokens: Literal["word", "char", "sentencepiece"] = "word"
    vocab_size: int = 10000  # sentencepiece only: pieces in the model
    bptt: int = 35  # truncated backpropagation through time: steps per batch; the state carries across batches
    batch_size: int = 20  # parallel streams the training split is cut into

    def __post_init__(self) -> None:
        if self.bptt < 1 or self.batch_size < 1:
            raise ConfigError(f"data.bptt and data.batch_size must be >= 1, got {self.bptt}, {self.batch_size}")


@dataclass(frozen=True)
class LMModelConfig:
    cell: Literal["lstm", "gru", "rnn", "peephole"] = "lstm"
    embedding_size: int = 200
    hidden_size: int = 200
    layers: int = 2
    dropout: float = 0.0  # between recurrent layers and on the last layer's outputs
    embedding_dropout: float = 0.0  # on the input embeddings
    tie_embeddings: bool = False  # output projection = input embeddings (needs hidden_size == embedding_size)
    recurrence: Literal["fp32", "autocast"] = "fp32"  # the recurrence's precision under train.precision bf16/fp16

    def __post_init__(self) -> None:
        for name in ("embedding_size", "hidden_size", "layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.embedding_dropout < 1.0:
            raise ConfigError("model.dropout and model.embedding_dropout must be in [0, 1)")
        if self.tie_embeddings and self.hidden_size != self.embedding_size:
            raise ConfigError(f"model.tie_embeddings needs model.hidden_size == model.embedding_size, got "
                              f"{self.hidden_size} and {self.embedding_size}")  # fmt: skip


# Which section types each task takes; a task without a tokenizer section maps it to None.
TASKS: dict[str, dict[str, type | None]] = {
    "translation": {"data": DataConfig, "tokenizer": TokenizerConfig, "model": TranslationModelConfig},
    "regression": {"data": SeriesDataConfig, "tokenizer": None, "model": RegressorModelConfig},
    "lm": {"data": LMDataConfig, "tokenizer": None, "model": LMModelConfig},
}


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    data: Any  # the task's data section (DataConfig for translation)
    tokenizer: Any  # TokenizerConfig, or None for tasks without text
    model: Any  # the task's model section
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.task == "translation" and self.model.share_embeddings and not self.tokenizer.joint:
            raise ConfigError("model.share_embeddings needs tokenizer.joint: true (one vocabulary for both sides)")
        if self.train.precision == "fp16" and self.train.device == "cpu":  # `auto` is checked once it is resolved
            raise ConfigError("train.precision fp16 needs train.device: cuda; on a CPU use bf16 or fp32")

    def to_dict(self) -> dict[str, Any]:
        """Plain values that `recipe_from_dict` reads back; sections a task does not have (None) are left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# --------------------------------------------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: typing.Sequence[str] = ()) -> Recipe:
    """Read a YAML recipe, apply dotted `key=value` overrides, validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path} must be a mapping of sections, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    return recipe_from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`train.max_steps=200` -> raw["train"]["max_steps"] = 200 (the value is parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.max_steps=200")
    *sections, leaf = key.strip().split(".")
    node = raw
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {s!r} is not a section")
    node[leaf] = yaml.safe_load(value) if value.strip() else ""


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    task = raw.get("task", "translation")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    types_ = {**TASKS[task], "train": TrainConfig}
    _check_keys(raw, ["name", "task", *(k for k, v in types_.items() if v is not None)], prefix="")
    sections = {name: _build(cls, raw.get(name) or {}, name) if cls else None for name, cls in types_.items()}
    return Recipe(name=str(raw["name"]), task=task, **sections)


def _check_keys(given: dict[str, Any], valid: list[str], prefix: str) -> None:
    for key in given:
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}")


def _build(cls: type, values: Any, section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section '{section}' must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, list(fields), prefix=f"{section}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type `hint`; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint_txt = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}{hint_txt}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
        arg = next(a for a in typing.get_args(hint) if a is not type(None))
        return _coerce(value, arg, key)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any non-empty length
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"{key} must be a non-empty list, got {value!r}")
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value
