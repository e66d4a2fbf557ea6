"""A recurrent language model on the shared core: embeddings -> dropout -> Recurrent -> dropout -> linear.

Training is truncated backpropagation through time without state on the model: each batch carries a box
(`batch.carry`, shared by the consecutive batches of one epoch) from which `loss` starts and into which it puts its
final state, detached. Search uses the step contract of seq2seq/models/step.py: `encode` runs a prompt, `decode_step`
feeds one token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.kernels.linear import linear
from seq2seq.losses import token_nll
from seq2seq.models.recurrent import Recurrent, State, detach_state, dropout, select_state
from seq2seq.models.step import Step
from seq2seq.tokenizer import EOS


@dataclass
class LMState:
    rnn: State  # one entry per layer, tensors (1, B, H)

    def select(self, index: Tensor) -> LMState:
        return LMState(select_state(self.rnn, index))

    def beams(self, k: int) -> LMState:
        """k copies of each row, side by side (row b * k + j is copy j of row b)."""
        rows = self.rnn[0][0].shape[1]
        return self.select(torch.arange(rows, device=self.rnn[0][0].device).repeat_interleave(k))


class LanguageModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        layers: int,
        cell: str = "lstm",
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        tie_embeddings: bool = False,
        recurrence: str = "fp32",
    ) -> None:
        super().__init__()
        if tie_embeddings and hidden_size != embedding_size:
            raise ValueError(
                f"tied embeddings need hidden_size == embedding_size, got {hidden_size}, {embedding_size}"
            )
        self.dropout, self.embedding_dropout, self.recurrence = dropout, embedding_dropout, recurrence
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = Recurrent(embedding_size, [hidden_size] * layers, cell, dropout=dropout)
        self.output = nn.Linear(hidden_size, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if tie_embeddings:
            self.output.weight = self.embedding.weight  # (V, E) serves as the output projection (V, H)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> logits (B, T, V), final state; state None = zeros."""
        x = dropout(self.embedding(tokens), self.embedding_dropout, self.training)  # (B, T, E)
        # By default the recurrence runs in float32 even under bf16 autocast: with the bf16 fused LSTM on CPU and
        # Adam (lr 0.002), PTB training stalled at the unigram loss (6.74 after 250 steps vs 6.55 in float32).
        # `recurrence: autocast` runs it in the autocast dtype: with the SGD recipes it learned like float32 per epoch
        # in a full 20-minute 2x200 run; on this CPU it is 24% faster per step at 2x650 and 4% slower at 2x200
        # (docs/experiments.md, "Language models"). The output projection stays in bf16 either way.
        if self.recurrence == "autocast":
            h, state = self.rnn(x, state)  # (B, T, H)
        else:
            with torch.autocast(tokens.device.type, enabled=False):
                h, state = self.rnn(x.float(), state)
        return linear(dropout(h, self.dropout, self.training), self.output.weight, self.output.bias), state

    def loss(self, batch) -> tuple[Tensor, int]:
        """Summed NLL of batch.targets, starting from batch.carry.state; stores the final state, detached."""
        logits, state = self(batch.inputs, batch.carry.state)
        batch.carry.state = detach_state(state)
        return token_nll(logits, batch.targets, count=batch.targets.numel())  # streams hold no padding

    def zero_state(self, batch_size: int, device: torch.device) -> State:
        shape = (1, batch_size)
        per_layer = 2 if self.rnn.cell in ("lstm", "peephole") else 1
        return [
            tuple(torch.zeros(*shape, h, device=device) for _ in range(per_layer))
            for h in self.rnn.hidden_sizes
        ]

    @torch.inference_mode()
    def stream_nll(self, ids: Tensor, chunk: int = 512) -> tuple[float, int]:
        """Exact summed NLL of every token of a 1-D stream, as one sequence (batch 1) after an initial EOS.

        The state is carried from chunk to chunk, so `chunk` changes only speed, not the result.
        """
        device = self.embedding.weight.device
        inputs = torch.cat([torch.tensor([EOS]), ids[:-1]])  # token t is predicted from everything before it
        total, state = 0.0, None
        for i in range(0, ids.numel(), chunk):
            logits, state = self(inputs[i : i + chunk].unsqueeze(0).to(device), state)
            loss, _ = token_nll(logits, ids[i : i + chunk].unsqueeze(0).to(device))
            total += float(loss)
        return total, ids.numel()

    # ------------------------------------------------------------------------- the step contract for search

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> LMState:
        """Run prompts src (B, T) of equal length (T may be 0) -> the state after their last token."""
        if src.shape[1] == 0:
            return LMState(self.zero_state(src.shape[0], src.device))
        return LMState(self(src)[1])

    def decode_step(self, tokens: Tensor, state: LMState, normalize: bool = True) -> Step:
        """tokens (B,) -> Step: log-probabilities of the next token (B, V) in float32, new state, no attention.
        normalize=False: the logits instead (same order)."""
        logits, rnn = self(tokens.unsqueeze(1), state.rnn)
        scores = F.log_softmax(logits[:, 0], -1, dtype=torch.float32) if normalize else logits[:, 0]
        return Step(scores, LMState(rnn), None)
