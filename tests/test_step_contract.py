"""The step contract (seq2seq/models/step.py): every model that decodes returns a `Step`, a `Shortlist` gives the
logits of its pieces and names them in `Step.ids`, and search reads nothing of a model but encode and decode_step."""

from __future__ import annotations

import copy

import pytest
import torch

from seq2seq import search
from seq2seq.data.batching import collate, pad
from seq2seq.ensemble import Ensemble
from seq2seq.models.int8 import available, quantize_decoder
from seq2seq.models.lm import LanguageModel
from seq2seq.models.step import Shortlist, Step
from seq2seq.tokenizer import BOS, EOS

from .test_seq2seq import VARIANTS, V, model, sentences


def _first_step(m, normalize: bool = True):
    batch = collate(sentences(3), sentences(3, seed=2))
    with torch.no_grad():
        state = m.encode(batch.src, batch.src_lengths)
        return state, m.decode_step(torch.full((3,), BOS), state, normalize=normalize)


@pytest.mark.parametrize("kw", VARIANTS[:4])
def test_a_translation_model_and_an_ensemble_return_steps(kw):
    for m in (model(**kw), Ensemble([model(**kw), model(**kw)])):
        _, step = _first_step(m)
        assert isinstance(step, Step) and step.ids is None
        assert step.scores.shape == (3, V) and step.scores.dtype == torch.float32
        assert step.attention.shape[0] == 3
        torch.testing.assert_close(step.scores.exp().sum(-1), torch.ones(3))
        assert step.state.beams(2).select(torch.tensor([5, 0])) is not None


def test_a_language_model_returns_steps_without_attention():
    lm = LanguageModel(V, 8, 10, 2).eval()
    with torch.no_grad():
        state = lm.encode(torch.tensor([[5, 6], [7, 8]]))
        step = lm.decode_step(torch.tensor([9, 10]), state, normalize=False)
    assert isinstance(step, Step) and step.attention is None and step.ids is None and step.scores.shape == (2, V)


def test_a_shortlist_gives_the_logits_of_its_pieces_only_for_logits():
    m = model(attention="luong", input_feeding=False)
    ids = torch.tensor([3, 5, 8, 9, 16])
    short = Shortlist(m, ids)
    state, full = _first_step(m, normalize=False)
    tokens = torch.full((3,), BOS)
    with torch.no_grad():
        cut = short.decode_step(tokens, state, normalize=False)
        log_probs = short.decode_step(tokens, state)
        m.generator.weight.mul_(2)  # the rows kept for the shortlist follow an update of the weights
        doubled = short.decode_step(tokens, state, normalize=False)
    assert cut.ids is ids and log_probs.ids is None
    torch.testing.assert_close(cut.scores, full.scores[:, ids])
    torch.testing.assert_close(log_probs.scores, torch.log_softmax(full.scores, -1))
    torch.testing.assert_close(doubled.scores, 2 * cut.scores)


@pytest.mark.skipif(bool(available()), reason="int8 decoding is not available here")
def test_a_shortlist_of_an_int8_model_cuts_the_int8_output_layer():
    q = quantize_decoder(copy.deepcopy(model()))  # float32 around the int8 products: the columns are exact
    ids = torch.tensor([EOS, 4, 7, 11])
    state, full = _first_step(q, normalize=False)
    with torch.no_grad():
        cut = Shortlist(q, ids).decode_step(torch.full((3,), BOS), state, normalize=False)
    torch.testing.assert_close(cut.scores, full.scores[:, ids], rtol=0, atol=0)


class OnlyTheContract:
    """A model that has nothing but encode and decode_step: reading any other attribute is an error."""

    def __init__(self, m) -> None:
        object.__setattr__(self, "_m", m)

    def __getattribute__(self, name: str):
        if name not in ("encode", "decode_step"):
            raise AttributeError(f"search read {name!r}")
        return getattr(object.__getattribute__(self, "_m"), name)


def test_search_reads_nothing_but_the_contract():
    m = model()
    src = sentences(5, seed=3)
    lengths = torch.tensor([len(s) for s in src])
    short = Shortlist(m, torch.tensor([EOS, *range(4, V, 2)]))
    for decoder in (m, short):
        for scores in (True, False):
            got = search.sample(OnlyTheContract(decoder), pad(src), lengths, scores=scores)
            assert [h.tokens for h in got] == [h.tokens for h in search.sample(decoder, pad(src), lengths, scores=scores)]
    beams = search.beam_search(OnlyTheContract(m), pad(src), lengths, beam_size=3, n_best=2)
    assert [[h.tokens for h in b] for b in beams] == [
        [h.tokens for h in b] for b in search.beam_search(m, pad(src), lengths, beam_size=3, n_best=2)]  # fmt: skip
