"""Several models decoding as one: their log-probabilities are averaged at every step.

An Ensemble speaks the same step contract as each of its members (seq2seq/models/step.py), so greedy,
sampling and beam search use it unchanged. The members must share the target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.models.step import Step


@dataclass
class EnsembleState:
    states: list

    def select(self, index: Tensor) -> EnsembleState:
        return EnsembleState([s.select(index) for s in self.states])

    def beams(self, k: int) -> EnsembleState:
        return EnsembleState([s.beams(k) for s in self.states])


class Ensemble:
    def __init__(self, models: list[torch.nn.Module]) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        ids = [getattr(m, "target_ids", None) for m in models]
        if any((i is None) != (ids[0] is None) or (i is not None and not torch.equal(i, ids[0])) for i in ids):
            raise ValueError("the members of an ensemble must share the target vocabulary (target_ids)")
        self.models = models

    def to_pieces(self, columns: list[int]) -> list[int]:
        """Search output -> target piece ids (the members share them)."""
        return self.models[0].to_pieces(columns)

    def eval(self) -> Ensemble:
        for m in self.models:
            m.eval()
        return self

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleState:
        return EnsembleState([m.encode(src, src_lengths) for m in self.models])

    def decode_step(self, tokens: Tensor, state: EnsembleState, normalize: bool = True) -> Step:
        """Mean of the members' log-probabilities, renormalized: log softmax(mean_i log p_i). Always normalized:
        the members' logits cannot be averaged."""
        steps = [m.decode_step(tokens, s) for m, s in zip(self.models, state.states)]
        log_probs = torch.log_softmax(torch.stack([s.scores for s in steps]).mean(0), dim=-1)
        attentions = [s.attention for s in steps if s.attention is not None]
        attention = torch.stack(attentions).mean(0) if attentions else None
        return Step(log_probs, EnsembleState([s.state for s in steps]), attention)
