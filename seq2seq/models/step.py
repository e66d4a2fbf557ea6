"""The step contract between search and the models that decode (STYLE.md principle 6), and the output shortlist.

    state = model.encode(src, src_lengths)               # src (B, S), src_lengths (B,)
    step = model.decode_step(tokens, state)              # tokens (B,) -> Step: scores (B, V) log-probabilities
    step = model.decode_step(tokens, state, normalize=False)   # scores: logits, the log-probabilities up to a
                                                         # constant per row (no pass over V for the normalizer)
    state = step.state.select(index)                     # keep / reorder / repeat rows
    state = step.state.beams(k)                          # k copies of each row, side by side (row b * k + j)

`Step.ids` is None when column j of `scores` is piece j (of the decoder's vocabulary); a (V',) tensor when the
columns are a shortlist, column j being piece ids[j] (`Shortlist`). Search reads nothing else of a model.
It lives with the models because they return `Step`; search imports it from here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.models.int8 import Int8Linear


class Step(NamedTuple):
    scores: Tensor  # (B, V) log-probabilities in float32, or logits (normalize=False); (B, V') on a shortlist
    state: Any  # a StepState: the model's state after this step
    attention: Tensor | None  # (B, S) weights over the source, None for a model without attention
    ids: Tensor | None = None  # None: column j is piece j; (V',): the piece of each column (normalize=False only)


class StepState(Protocol):
    def select(self, index: Tensor) -> StepState:
        """Rows index (N,) of this state, in that order (repeats allowed)."""
        ...

    def beams(self, k: int) -> StepState:
        """k copies of each row, side by side: row b * k + j is copy j of row b."""
        ...


class StepModel(Protocol):
    def encode(self, src: Tensor, src_lengths: Tensor) -> StepState: ...

    def decode_step(self, tokens: Tensor, state: StepState, normalize: bool = True) -> Step: ...


class Shortlist:
    """A decoder whose logits cover only the pieces `ids` (V',): for an argmax (greedy search without scores), not
    for scores, whose normalizer needs every piece. decode_step with normalize=False returns the logits of those
    pieces (B, V') and `Step.ids` = ids; with normalize=True it is the model's own decode_step (every piece).

    model: a decoder with `decode_output(tokens, state) -> (o (B, O), state, attention)` and the output layer
    `generator` (nn.Linear, or Int8Linear, cut with its `rows`), as Seq2Seq. The cut layer is kept while the
    output weights and their version are unchanged (an optimizer step bumps the version)."""

    def __init__(self, model, ids: Tensor) -> None:
        self.model, self.ids = model, ids
        self._cached: tuple[tuple, Callable[[Tensor], Tensor]] | None = None

    def encode(self, src: Tensor, src_lengths: Tensor):
        return self.model.encode(src, src_lengths)

    def decode_step(self, tokens: Tensor, state, normalize: bool = True) -> Step:
        if normalize:
            return self.model.decode_step(tokens, state)
        o, state, weights = self.model.decode_output(tokens, state)
        return Step(self.layer()(o), state, weights, self.ids)

    def layer(self) -> Callable[[Tensor], Tensor]:
        """The output layer cut to the rows of `ids`: o (B, O) -> logits (B, V')."""
        generator, ids = self.model.generator, self.ids
        weight = generator.weight
        key = (id(generator), weight.data_ptr(), weight._version, weight.dtype, weight.device, ids.data_ptr(),
               ids.numel())  # fmt: skip
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                if isinstance(generator, Int8Linear):
                    layer = generator.rows(ids)
                else:
                    layer = partial(F.linear, weight=weight.index_select(0, ids.to(weight.device)))
            self._cached = (key, layer)
        return self._cached[1]
