"""scripts/bench.py's count of decoding FLOPs (`DecodeWork`), against torch's own FLOP counter."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seq2seq import search
from seq2seq.config import load_recipe
from seq2seq.models.step import Shortlist

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def mv_flops(matrix_shape, vector_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode has no formula for a matrix-vector product (Bahdanau's scores): it is given the shapes."""
    return 2 * matrix_shape[0] * matrix_shape[1]


@pytest.mark.parametrize("overrides", [
    [],  # the recipe's decoder: input feeding, Bahdanau, bridge
    ["model.attention=luong", "model.input_feeding=false", "model.bridge=false"],
    ["model.attention=luong", "model.input_feeding=false", "model.context_feeding=true", "model.decoder_layers=3"],
    ["model.tie_embeddings=true", "model.bidirectional=false", "model.encoder_layers=1"],
])  # fmt: skip
@pytest.mark.parametrize("beam", [1, 3])
def test_decode_flops_are_what_torch_counts_plus_the_encoder_lstm_it_cannot_see(overrides, beam):
    bench = load_bench()
    sizes = ["model.embedding_size=24", "model.encoder_hidden=16", "model.decoder_hidden=40"]
    recipe = load_recipe(ROOT / "recipes" / "en-fr.yaml", sizes + overrides)
    torch.manual_seed(0)
    model = bench.build_model(recipe, 50, 60).eval()
    short = Shortlist(model, torch.arange(4, 37))  # a shortlist, which greedy search takes its argmax over
    work = bench.DecodeWork(SimpleNamespace(model=model, greedy_model=short, recipe=recipe, precision="fp32"))
    src = torch.randint(4, 50, (7, 9))
    lengths = torch.tensor([9, 9, 8, 6, 5, 5, 2])
    src[torch.arange(9) >= lengths.unsqueeze(1)] = 0
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping={torch.ops.aten.mv: mv_flops}) as counter:
        if beam == 1:  # as Translator.translate searches: no scores, so the argmax over the shortlist
            search.sample(short, src, lengths, scores=False, attention=False)
        else:
            search.beam_search(model, src, lengths, beam)
    lstm = bench.encoder_lstm_flops(recipe.model)
    assert counter.get_total_flops() > 0
    assert sum(work.flops.values()) - src.numel() * lstm == counter.get_total_flops()
    assert work.seconds_at_peak({"fp32": 1e9}) == pytest.approx(sum(work.flops.values()) / 1e9)
