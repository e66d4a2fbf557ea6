"""LSTM encoder-decoder with attention.

    encoder: embeddings -> Recurrent (bidirectional, packed)                   memory (B, S, D*He)
    decoder: y_{t-1} [+ o_{t-1} with input feeding] -> Recurrent -> h_t         (B, Hd)
             context c_t = attention(h_t, memory);  o_t = tanh(W [h_t; c_t])   (B, O)
             p(y_t | y_<t, x) = softmax(W_out o_t)

With input feeding off, h_t does not depend on o_{t-1}, so teacher forcing runs the decoder over the whole target
in one fused call and attends for all steps at once (`forward`'s fast path). With input feeding on, LSTM decoders
train on an unrolled loop whose weight gradients are formed once for all steps (`seq2seq/models/unrolled.py`).

Context feeding (GNMT, Wu et al. 2016) keeps that fast path and still lets the decoder carry what it attended to:
the bottom decoder layer asks the query, and its context vector joins the input of the layer above,

    h1_t = LSTM_1(y_{t-1}, h1_{t-1});  c_t = attention(h1_t, memory);  h_t = LSTM_2..L([h1_t; c_t], ...)
    o_t = tanh(W [h_t; c_t])

so the upper layers' recurrence sees every past context (the point of input feeding), and each part is one fused
call over the whole target: bottom layer, attention for all steps, upper layers. Search uses the step contract of
seq2seq/models/step.py: `encode(src, lengths) -> DecoderState`, `decode_step(tokens, state) -> Step` and
`state.select(index)`, `state.beams(k)`; `decode_output` is a step up to the output layer, for `step.Shortlist`.

Target vocabulary: given `target_ids` (the pieces seen on the target side of the training data, specials first),
the decoder's embeddings and output layer have a row per one of those pieces only, and the decoder speaks column
ids: column j is piece target_ids[j]; columns 0-3 are PAD, UNK, BOS and EOS, as the pieces are, so search needs no
mapping. `loss` maps a batch's pieces to columns (pieces never seen in training -> UNK); `to_pieces` maps search
output back.

The model keeps nothing between calls: label smoothing and the scheduled-sampling probability are arguments of
`loss`, and `TrainingLoss` is what the trainer calls at each step, turning the step into that probability through
`sampling_probability`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.data.batching import Batch
from seq2seq.kernels.padding import to_device
from seq2seq.losses import token_nll
from seq2seq.models.attention import Attention
from seq2seq.models.recurrent import Dropout, Recurrent, State, select_state
from seq2seq.models.step import Step
from seq2seq.models.unrolled import BahdanauSteps, LinearSteps, LuongSteps, UnrolledLSTM
from seq2seq.tokenizer import EOS, PAD, UNK


@dataclass
class DecoderState:
    rnn: State  # per decoder layer, tensors (1, R, Hd): one entry per row
    feed: Tensor | None  # (R, O) the previous attentional output (input feeding), else None
    memory: Tensor  # (R / group, S, D*He) encoder outputs
    keys: Tensor  # (R / group, S, A) attention key projections of memory
    mask: Tensor  # (R / group, S) True at real source tokens
    group: int = 1  # consecutive rows that share one memory entry: row r attends to memory[r // group]

    def select(self, index: Tensor) -> DecoderState:
        """Keep/reorder rows: state.select(tensor([0, 0, 2])) duplicates row 0 and drops row 1.

        With group > 1 (after `beams`), an index that keeps each block of `group` rows within one memory entry
        (beam search reordering hypotheses of a sentence, or dropping whole sentences) selects memory entries
        and copies nothing when it keeps them all; any other index gives every row its own memory entry again."""
        rnn = select_state(self.rnn, index)
        feed = None if self.feed is None else self.feed.index_select(0, index)
        g = self.group
        entries, group = index // g, 1  # the memory entry of each new row
        if g > 1 and index.numel() % g == 0:
            blocks = entries.view(-1, g)
            if bool((blocks == blocks[:, :1]).all()):
                entries, group = blocks[:, 0], g
        if torch.equal(entries, torch.arange(self.memory.shape[0], device=entries.device)):
            return DecoderState(rnn, feed, self.memory, self.keys, self.mask, group)
        memory, keys, mask = (t.index_select(0, entries) for t in (self.memory, self.keys, self.mask))
        return DecoderState(rnn, feed, memory, keys, mask, group)

    def beams(self, k: int) -> DecoderState:
        """k copies of each row, side by side (row b * k + j is copy j of row b), sharing the row's memory: the
        attention of a beam step is then one (k x S) product per sentence instead of k (1 x S) ones."""
        if self.group != 1:
            raise ValueError("beams() applies to a state with one memory entry per row")
        index = torch.arange(self.memory.shape[0], device=self.memory.device).repeat_interleave(k)
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return DecoderState(select_state(self.rnn, index), feed, self.memory, self.keys, self.mask, k)


@dataclass(frozen=True)
class Seq2SeqShape:
    """A Seq2Seq's architecture: the sizes and choices that fix its parameters and its computation."""

    src_vocab: int
    tgt_vocab: int  # every piece of the target vocabulary (with `target_ids`, the decoder's columns are fewer)
    embedding_size: int = 256
    encoder_hidden: int = 256
    encoder_layers: int = 2
    bidirectional: bool = True
    decoder_hidden: int = 512
    decoder_layers: int = 2
    cell: str = "lstm"  # lstm | gru | rnn | peephole
    attention: str = "bahdanau"  # bahdanau | luong
    input_feeding: bool = True
    tie_embeddings: bool = False
    share_embeddings: bool = False
    context_feeding: bool = False
    bridge: bool = True

    def __post_init__(self) -> None:
        if self.share_embeddings and self.src_vocab != self.tgt_vocab:
            raise ValueError(f"share_embeddings needs one vocabulary, got {self.src_vocab} and {self.tgt_vocab} "
                             "entries")  # fmt: skip
        if self.context_feeding and (self.input_feeding or self.decoder_layers < 2):
            raise ValueError("context_feeding needs input_feeding off and at least 2 decoder layers")


SAMPLING_SCHEDULES = ("off", "linear", "inverse_sigmoid")


def sampling_probability(step: int, schedule: str = "off", top: float = 0.25, steps: int = 4000) -> float:
    """p(step) of scheduled sampling (Bengio et al. 2015), the probability of feeding the model's own previous
    prediction instead of the reference after `step` training steps: "linear", a ramp to `top` over `steps`;
    "inverse_sigmoid", the complement of Bengio et al.'s inverse-sigmoid decay of the teacher-forcing probability, a
    sigmoid rising to `top`, halfway at `steps`; "off", 0. A pure function of its arguments."""
    if schedule == "linear":
        return top * min(1.0, step / max(steps, 1))
    if schedule == "inverse_sigmoid":
        z = max(-60.0, min(60.0, (step - steps) / max(steps / 8, 1)))
        return top / (1 + math.exp(-z))
    if schedule == "off":
        return 0.0
    raise ValueError(f"unknown scheduled sampling {schedule!r}; choose one of {', '.join(SAMPLING_SCHEDULES)}")


@dataclass(frozen=True)
class TrainingLoss:
    """The trainer's loss function for a `Seq2Seq`, called as `loss(model, batch, step)` -> (summed loss, count):
    `Seq2Seq.loss` label-smoothed by `label_smoothing`, the decoder fed its own predictions with the scheduled-sampling
    probability after `step` training steps (`sampling_probability`). Settings only: the model stays the same from
    step to step, and a resumed run goes on with the schedule from its saved step."""

    label_smoothing: float = 0.0
    scheduled_sampling: str = "off"  # off | linear | inverse_sigmoid
    sampling_max: float = 0.25  # the largest probability reached
    sampling_steps: int = 4000  # linear: steps of the ramp; inverse_sigmoid: its midpoint

    def __post_init__(self) -> None:
        if self.scheduled_sampling not in SAMPLING_SCHEDULES:
            raise ValueError(f"unknown scheduled sampling {self.scheduled_sampling!r}; choose one of "
                             f"{', '.join(SAMPLING_SCHEDULES)}")  # fmt: skip

    def sampling(self, step: int) -> float:
        """The probability of feeding a prediction at a step that follows `step` steps."""
        return sampling_probability(step, self.scheduled_sampling, self.sampling_max, self.sampling_steps)

    def __call__(self, model: Seq2Seq, batch: Batch, step: int) -> tuple[Tensor, int]:
        return model.loss(batch, label_smoothing=self.label_smoothing, sampling=self.sampling(step))


class Seq2Seq(nn.Module):
    def __init__(
        self,
        shape: Seq2SeqShape,
        *,
        dropout: float = 0.3,
        target_ids: Tensor | list[int] | None = None,
    ) -> None:
        """shape: the architecture; dropout, for training; target_ids: the target vocabulary (the pieces the decoder
        has columns for; None: every piece). What a training step adds (label smoothing, scheduled sampling) are
        arguments of `loss`."""
        super().__init__()
        self.shape = shape
        src_vocab, tgt_vocab, embedding_size, cell = shape.src_vocab, shape.tgt_vocab, shape.embedding_size, shape.cell
        input_feeding, decoder_hidden, decoder_layers = shape.input_feeding, shape.decoder_hidden, shape.decoder_layers
        share_embeddings, context_feeding = shape.share_embeddings, shape.context_feeding
        self.cell, self.input_feeding = cell, input_feeding
        if target_ids is not None:
            ids = torch.as_tensor(target_ids, dtype=torch.long)
            if share_embeddings:
                raise ValueError("share_embeddings needs the whole vocabulary on the target side, not target_ids")
            if ids[: EOS + 1].tolist() != list(range(EOS + 1)) or not bool((ids[1:] > ids[:-1]).all()):
                raise ValueError("target_ids must be sorted, distinct, and start with PAD, UNK, BOS, EOS (0-3)")
            if int(ids[-1]) >= tgt_vocab:
                raise ValueError(f"target_ids name piece {int(ids[-1])} of a {tgt_vocab}-piece vocabulary")
            # column of each piece (pieces the decoder does not know -> UNK); not saved: target_ids determine it
            columns = torch.full((tgt_vocab,), UNK, dtype=torch.long)
            columns[ids] = torch.arange(len(ids))
            self.register_buffer("target_ids", ids)
            self.register_buffer("columns", columns, persistent=False)
            tgt_vocab = len(ids)
        else:
            self.target_ids = self.columns = None
        self.src_embed = nn.Embedding(src_vocab, embedding_size, padding_idx=PAD)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab, embedding_size, padding_idx=PAD)
        self.encoder = Recurrent(embedding_size, [shape.encoder_hidden] * shape.encoder_layers, cell, shape.bidirectional,
                                 dropout)  # fmt: skip
        memory_size = self.encoder.output_size
        self.output_size = embedding_size if shape.tie_embeddings else decoder_hidden
        feed_size = self.output_size if input_feeding else 0
        self.decoder_layers = decoder_layers
        bottom = 1 if context_feeding else decoder_layers  # layers that run before the attention
        self.decoder = Recurrent(embedding_size + feed_size, [decoder_hidden] * bottom, cell, False, dropout)
        self.upper = (  # context feeding: the layers after the attention, which read [h1_t; c_t]
            Recurrent(decoder_hidden + memory_size, [decoder_hidden] * (decoder_layers - 1), cell, False, dropout)
            if context_feeding else None
        )  # fmt: skip
        # The decoder's initial state from the encoder's summary (Joey NMT's init_hidden "bridge"); None: zeros, so
        # that only the attention carries the source
        self.bridge = nn.Linear(memory_size, decoder_hidden) if shape.bridge else None
        self.decoder_hidden = decoder_hidden
        self.attention = Attention(shape.attention, decoder_hidden, memory_size, decoder_hidden)
        self.combine = nn.Linear(decoder_hidden + memory_size, self.output_size, bias=False)
        self.generator = nn.Linear(self.output_size, tgt_vocab, bias=False)
        self.dropout = Dropout(dropout)
        # Teacher forcing with input feeding runs LSTM layers on UnrolledLSTM; False: a call of the fused layers per
        # step (the benchmark's plain reference, and a check of the unrolled loop in the tests)
        self.unrolled = True
        for emb in dict.fromkeys([self.src_embed, self.tgt_embed]):  # ordered: a set would make init random
            nn.init.uniform_(emb.weight, -0.1, 0.1)
            emb.weight.data[PAD].zero_()
        if shape.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    # ------------------------------------------------------------------------------------------------ encoder

    def encode(self, src: Tensor, src_lengths: Tensor) -> DecoderState:
        """src (B, S), src_lengths (B,) -> the decoder's initial state, holding the encoder's memory."""
        memory, _ = self.encoder(self.dropout(self.src_embed(src)), lengths=src_lengths, final_state=False)  # (B, S, D*He)
        B, S, _ = memory.shape
        lengths = to_device(src_lengths, src.device)
        mask = torch.arange(S, device=src.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)
        if self.bridge is None:
            h0 = memory.new_zeros(1, B, self.decoder_hidden)
        else:  # summary of the sentence: forward direction at the last real token, backward direction at the first
            last = memory[torch.arange(B, device=src.device), lengths - 1]  # (B, D*He)
            if self.encoder.directions == 2:
                half = memory.shape[-1] // 2
                last = torch.cat([last[:, :half], memory[:, 0, half:]], dim=-1)
            h0 = torch.tanh(self.bridge(last)).unsqueeze(0)  # (1, B, Hd)
        layer_state = (h0, h0) if self.cell in ("lstm", "peephole") else (h0,)
        feed = memory.new_zeros(B, self.output_size) if self.input_feeding else None
        return DecoderState(
            rnn=[layer_state] * self.decoder_layers,
            feed=feed,
            memory=memory,
            keys=self.attention.project_keys(memory),
            mask=mask,
        )

    # ------------------------------------------------------------------------------------------------ decoder

    def _context(self, h: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Query h (R, T, Hd) -> context (R, T, K) in h's dtype, weights (R, T, S)."""
        if state.group > 1:  # one decoder step of `group` rows per memory entry: attend as (R / group, group, .)
            R, g = h.shape[0], state.group
            context, weights = self.attention(h.reshape(R // g, g, -1), state.keys, state.memory, state.mask)
            context, weights = context.reshape(R, 1, -1), weights.reshape(R, 1, -1)
        else:
            context, weights = self.attention(h, state.keys, state.memory, state.mask)
        return context.to(h.dtype), weights

    def _decode(self, x: Tensor, state: DecoderState) -> tuple[Tensor, State, Tensor]:
        """Decoder inputs x (R, T, I) from `state` on -> attentional outputs o (R, T, O), the decoder's recurrent
        state after the last step, attention weights (R, T, S). T is the whole target in teacher forcing (without
        input feeding) and 1 in search."""
        if self.upper is None:
            h, rnn = self.decoder(x, state.rnn)  # (R, T, Hd)
            context, weights = self._context(h, state)
        else:
            h1, bottom = self.decoder(x, state.rnn[:1])
            context, weights = self._context(h1, state)
            h, upper = self.upper(torch.cat([self.dropout(h1), context], dim=-1), state.rnn[1:])
            rnn = bottom + upper
        o = torch.tanh(self.combine(torch.cat([h, context], dim=-1)))
        return self.dropout(o), rnn, weights

    def _step(self, emb: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """emb (B, E) -> o (B, O), next state, attention weights (B, S)."""
        x = emb if state.feed is None else torch.cat([emb, state.feed.to(emb.dtype)], dim=-1)
        o, rnn, weights = self._decode(x.unsqueeze(1), state)
        o = o.squeeze(1)
        feed = o if self.input_feeding else None
        return o, DecoderState(rnn, feed, state.memory, state.keys, state.mask, state.group), weights.squeeze(1)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, sampling: float = 0.0) -> Tensor:
        """Teacher forcing: src (B, S), tgt_in (B, T) -> logits (B, T, V). sampling > 0: scheduled sampling, each
        decoder input after the first the model's own previous argmax with that probability (`_forward_sampled`)."""
        if sampling > 0:
            return self._forward_sampled(src, src_lengths, tgt_in, sampling)
        state = self.encode(src, src_lengths)
        emb = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        if not self.input_feeding:  # fast path: fused recurrent calls, attention for all steps at once
            o, _, _ = self._decode(emb, state)  # (B, T, O)
        elif self.cell == "lstm" and self.unrolled:
            o = self._input_feeding_loop(emb, state)
        else:
            outputs = []
            for t in range(emb.shape[1]):
                o_t, state, _ = self._step(emb[:, t], state)
                outputs.append(o_t)
            o = torch.stack(outputs, dim=1)  # (B, T, O)
        return self.generator(o)

    def _input_feeding_loop(self, emb: Tensor, state: DecoderState) -> Tensor:
        """Teacher forcing with input feeding, LSTM cells: `_step`'s computation on `UnrolledLSTM` (embeddings
        projected for all steps at once, one product per layer and step, weight gradients formed once)."""
        device = emb.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else emb.dtype
        lstm = UnrolledLSTM(self.decoder, emb, dtype)
        combine = LinearSteps(self.combine.weight, emb.shape[1], dtype)
        if self.attention.kind == "luong":
            attend = LuongSteps(state.keys, state.memory, state.mask, dtype)
        else:
            attend = BahdanauSteps(self.attention, state.keys, state.memory, state.mask, emb.shape[1], dtype)
        rnn, feed, outputs = lstm.initial(state.rnn), state.feed, []
        for t in range(emb.shape[1]):
            h, rnn = lstm.step(t, feed, rnn)
            feed = self.dropout(torch.tanh(combine(t, h, attend(t, h))))
            outputs.append(feed)
        return torch.stack(outputs, dim=1)

    def _forward_sampled(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, p: float) -> Tensor:
        """Step by step; from step 1 on, each input is the model's own previous argmax with probability p."""
        state = self.encode(src, src_lengths)
        logits, tokens = [], tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            if t > 0:
                own = logits[-1].detach().argmax(-1)
                use_own = torch.rand(own.shape, device=own.device) < p
                tokens = torch.where(use_own & (tgt_in[:, t] != PAD), own, tgt_in[:, t])
            o, state, _ = self._step(self.dropout(self.tgt_embed(tokens)), state)
            logits.append(self.generator(o))
        return torch.stack(logits, dim=1)

    def decode_step(self, tokens: Tensor, state: DecoderState, normalize: bool = True) -> Step:
        """tokens (B,) -> Step: log-probabilities (B, V) in float32, next state, attention weights (B, S).
        normalize=False: the logits instead (same order, no pass over the vocabulary for the normalizer)."""
        o, state, weights = self.decode_output(tokens, state)
        logits = self.generator(o)
        return Step(F.log_softmax(logits, dim=-1, dtype=torch.float32) if normalize else logits, state, weights)

    def decode_output(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """tokens (B,) -> the attentional output o (B, O) that `generator` maps to logits, next state, attention
        weights (B, S)."""
        return self._step(self.dropout(self.tgt_embed(tokens)), state)

    def loss(self, batch: Batch, label_smoothing: float = 0.0, sampling: float = 0.0) -> tuple[Tensor, int]:
        """Summed token NLL and the number of target tokens. Training passes its label smoothing and the probability
        of feeding the decoder its own predictions (scheduled sampling; `TrainingLoss`); the defaults are the plain
        NLL of teacher forcing, validation's."""
        logits = self(batch.src, batch.src_lengths, self.to_columns(batch.tgt_in), sampling)
        return token_nll(logits, self.to_columns(batch.tgt_out), label_smoothing, batch.n_tokens)

    def to_columns(self, pieces: Tensor) -> Tensor:
        """Target piece ids -> the decoder's column ids (the same without a target vocabulary)."""
        return pieces if self.columns is None else self.columns[pieces]

    def to_pieces(self, columns: list[int]) -> list[int]:
        """The decoder's column ids (search output) -> target piece ids."""
        return columns if self.target_ids is None else self.target_ids[columns].tolist()
