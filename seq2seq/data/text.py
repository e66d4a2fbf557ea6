"""Language-model data: a vocabulary from the training split, each split as one token stream, BPTT batches.

Word level (PTB, WikiText-2): tokens are split on whitespace and one `<eos>` ends every line, as in pytorch/examples
`word_language_model`; the corpus's own `<unk>` and `<eos>` become our fixed UNK and EOS ids. Character level: the
characters of each line, then EOS. The vocabulary is a plain list of strings (id = position) that travels inside
checkpoints; ids 0..3 keep their meaning from seq2seq/tokenizer.py. SentencePiece level: pieces of a model trained on
the training split (`PieceVocabulary`; its proto travels inside checkpoints instead of a list).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from seq2seq.data.corpora import DataError, corpus_file, read_lines
from seq2seq.kernels.padding import to_device
from seq2seq.tokenizer import EOS, UNK, Tokenizer

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]  # ids PAD, UNK, BOS, EOS
SPLIT_FILES = {
    "ptb": {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"},
    "wikitext-2": {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
}


def split_lines(corpus: str, split: str) -> list[str]:
    if split not in SPLIT_FILES[corpus]:
        raise DataError(f"corpus {corpus!r} has splits {', '.join(SPLIT_FILES[corpus])}, not {split!r}")
    return read_lines(corpus_file(corpus, SPLIT_FILES[corpus][split]))


def line_tokens(line: str, level: str) -> list[str]:
    """'the cat' -> ['the', 'cat', '<eos>'] (word) or ['t', 'h', 'e', ' ', 'c', 'a', 't', '<eos>'] (char)."""
    return [*(line.split() if level == "word" else line), "<eos>"]


def word_count(lines: Sequence[str]) -> int:
    """Whitespace tokens plus one `<eos>` per line: the count a word-level perplexity divides by."""
    return sum(len(line.split()) + 1 for line in lines)


class Vocabulary:
    """Token <-> id; unknown tokens map to UNK."""

    def __init__(self, tokens: Sequence[str], level: str) -> None:
        if list(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.tokens, self.level = list(tokens), level
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_lines(cls, lines: Sequence[str], level: str) -> Vocabulary:
        """The specials, then every token of `lines` in order of first occurrence (`<unk>`/`<eos>` are specials)."""
        seen = dict.fromkeys(SPECIALS)
        for line in lines:
            seen.update(dict.fromkeys(line_tokens(line, level)))
        return cls(list(seen), level)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in tokens]

    def stream(self, lines: Sequence[str]) -> Tensor:
        """Every line's tokens, EOS after each, as one 1-D LongTensor."""
        return torch.tensor(
            [i for line in lines for i in self.encode(line_tokens(line, self.level))], dtype=torch.long
        )

    def prompt(self, text: str) -> list[int]:
        """A prompt's ids without a final EOS (the text goes on)."""
        return self.encode(text.split() if self.level == "word" else list(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; EOS shows as a line break."""
        pieces = ["\n" if i == EOS else self.tokens[i] for i in ids]
        if self.level == "char":
            return "".join(pieces)
        return " ".join(pieces).replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")

    def state(self) -> list[str]:
        """What a checkpoint stores to rebuild this vocabulary (see `vocabulary_from`)."""
        return self.tokens


class PieceVocabulary:
    """SentencePiece pieces, the same interface as Vocabulary. The corpus's own `<unk>` (PTB and WikiText-2 mark
    rare words with it) maps to UNK rather than being spelled out in pieces; EOS ends every line."""

    level = "sentencepiece"

    def __init__(self, proto: bytes) -> None:
        self.tokenizer = Tokenizer(proto)

    @classmethod
    def from_lines(cls, lines: Sequence[str], vocab_size: int) -> PieceVocabulary:
        clean = [part for line in lines for part in _around_unk(line)]
        return cls(Tokenizer.train(clean, vocab_size=vocab_size).proto)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def _line(self, line: str) -> list[int]:
        parts = self.tokenizer.encode(_around_unk(line))
        return [i for k, part in enumerate(parts) for i in ([UNK] if k else []) + part]

    def stream(self, lines: Sequence[str]) -> Tensor:
        return torch.tensor([i for line in lines for i in (*self._line(line), EOS)], dtype=torch.long)

    def prompt(self, text: str) -> list[int]:
        return self._line(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; UNK shows as `<unk>`, EOS as a line break."""
        return "\n".join(self._decode_line(line) for line in _split(list(ids), EOS))

    def _decode_line(self, ids: list[int]) -> str:
        text = " <unk> ".join(self.tokenizer.sp.decode(segment) for segment in _split(ids, UNK))
        return " ".join(text.split())

    def state(self) -> bytes:
        return self.tokenizer.proto


def _around_unk(line: str) -> list[str]:
    """The text between the corpus's `<unk>` marks, whitespace-normalised: 'a <unk> b' -> ['a', 'b']."""
    return [" ".join(part.split()) for part in line.split("<unk>")]


def _split(ids: list[int], separator: int) -> list[list[int]]:
    """[5, 3, 6, 7, 3] split at 3 -> [[5], [6, 7], []]."""
    out: list[list[int]] = [[]]
    for i in ids:
        if i == separator:
            out.append([])
        else:
            out[-1].append(i)
    return out


def build_vocabulary(lines: Sequence[str], level: str, vocab_size: int) -> Vocabulary | PieceVocabulary:
    """The vocabulary of a training split at `level` (word | char | sentencepiece); deterministic."""
    if level == "sentencepiece":
        return PieceVocabulary.from_lines(lines, vocab_size)
    return Vocabulary.from_lines(lines, level)


def vocabulary_from(state: list[str] | bytes, level: str) -> Vocabulary | PieceVocabulary:
    """Rebuild the vocabulary a checkpoint stored with `.state()`."""
    return PieceVocabulary(state) if level == "sentencepiece" else Vocabulary(state, level)


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut one stream into `batch_size` parallel streams, one per row; the remainder that does not fit is dropped.

    a b c d e f g h i j k l m  (13 tokens), batch_size 3  ->  [[a b c d],
                                                               [e f g h],
                                                               [i j k l]]   (m dropped)
    Row b continues in the next BPTT batch where it stopped in this one, so the state of row b carries over.
    """
    n = ids.numel() // batch_size
    return ids[: n * batch_size].view(batch_size, n)


@dataclass
class Carry:
    """The recurrent state handed from one BPTT batch to the next (detached by the model), shared within an epoch."""

    state: list | None = None


@dataclass
class LMBatch:
    inputs: Tensor  # (B, T)
    targets: Tensor  # (B, T): inputs shifted by one token
    carry: Carry = field(default_factory=Carry)

    def to(self, device) -> LMBatch:
        return LMBatch(to_device(self.inputs, device), to_device(self.targets, device), self.carry)


class StreamBatches:
    """Truncated-BPTT batches over `batch_size` parallel streams, in order: batch k holds columns [k*bptt, (k+1)*bptt).

    Every epoch (and a run resumed in the middle of one) starts from a fresh Carry, i.e. a zero state; within an
    epoch the state carries across consecutive batches.
    """

    def __init__(self, ids: Tensor, batch_size: int, bptt: int) -> None:
        self.data, self.bptt = batchify(ids, batch_size), bptt
        self.columns = self.data.shape[1] - 1  # the last column is only ever a target
        if self.columns < 1:
            raise ValueError(f"a stream of {ids.numel()} tokens is too short for {batch_size} rows")

    def __len__(self) -> int:
        return -(-self.columns // self.bptt)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, LMBatch]]:
        carry = Carry()
        for k in range(start, len(self)):
            i = k * self.bptt
            t = min(self.bptt, self.columns - i)
            yield k + 1, LMBatch(self.data[:, i : i + t], self.data[:, i + 1 : i + 1 + t], carry)
