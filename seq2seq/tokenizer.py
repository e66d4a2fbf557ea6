"""The only module that imports sentencepiece, and the one source of truth for special token ids."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import sentencepiece as spm

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """A SentencePiece model held in memory (its serialized proto travels inside checkpoints)."""

    def __init__(self, proto: bytes) -> None:
        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise ValueError("this SentencePiece model was not trained with pad=0, unk=1, bos=2, eos=3")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        max_sentences: int = 2_000_000,
        seed: int | None = None,
    ) -> Tokenizer:
        """A model learned from `texts` (empty ones skipped). Of more than `max_sentences` texts SentencePiece keeps
        a random sample of that many, drawn from `seed` (None: SentencePiece's own seed, which varies)."""
        model = io.BytesIO()
        if seed is not None:
            spm.set_random_generator_seed(seed)
        spm.SentencePieceTrainer.train(
            sentence_iterator=(t for t in texts if t),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            hard_vocab_limit=False,  # a small corpus gets the vocabulary it can fill, not an error
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
        return cls(model.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return [self.sp.decode([i for i in seq if i > EOS]) for seq in ids]
