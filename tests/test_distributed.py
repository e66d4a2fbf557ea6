"""Two processes with torchrun and gloo on the CPU train like one process on the union of their batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from seq2seq.data.batching import PairBatches, collate
from seq2seq.tasks import build_training

from .conftest import ROOT, TOY_OVERRIDES, toy_recipe

STEPS = ["train.max_steps=12", "train.valid_every=6", "train.log_every=1", "train.precision=fp32",
         "data.valid_limit=20", "model.dropout=0.0"]  # fmt: skip


class Union:
    """The batches rank 0 and rank 1 would see at each step, merged into one batch for a single process."""

    def __init__(self, ranks: list[PairBatches]) -> None:
        self.ranks = ranks

    def epoch(self, epoch: int, start: int = 0):
        for parts in zip(*(r.epoch(epoch, start) for r in self.ranks)):
            yield parts[0][0], merge([b for _, b in parts])


def merge(batches):
    src, tgt = [], []
    for b in batches:
        for i in range(b.src.shape[0]):
            src.append(b.src[i, : int(b.src_lengths[i])].tolist())
            n = int((b.tgt_out[i] != 0).sum())
            tgt.append(b.tgt_out[i, : n - 1].tolist())  # without EOS
    return collate(src, tgt)


def train_losses(run_dir) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").open()) if r["kind"] == "train"]


@pytest.mark.parametrize("decoder", [[], ["model.input_feeding=false", "model.attention=luong"]],
                         ids=["input-feeding", "fused"])  # the recipe's unrolled loop forms its weight gradients last
def test_two_gloo_processes_match_one_process_on_the_combined_batch(toy_data, tmp_path, decoder):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "seq2seq.train",
           "recipes/en-fr.yaml", *TOY_OVERRIDES, *STEPS, *decoder, "--run-dir", str(tmp_path / "ddp")]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert r.stdout.decode().count("run directory") == 1  # rank 0 alone speaks ...
    # ... and saves: the recipe's checkpoints, and the last 4 validations' weights with their mean (keep_checkpoints)
    valid = [r["step"] for r in map(json.loads, (tmp_path / "ddp" / "metrics.jsonl").open()) if r["kind"] == "valid"]
    kept = [f"step-{step}.pt" for step in valid[-4:]]
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.pt")) == sorted(["averaged.pt", "best.pt", "last.pt", *kept])
    ddp = train_losses(tmp_path / "ddp")
    assert len(ddp) == 12  # every step logged once, not once per rank

    torch.set_num_threads(1)
    single = build_training(toy_recipe(*STEPS, *decoder), tmp_path / "single", resume=False)
    table, budget, seed = single.data.table, single.data.budget, single.data.seed
    single.data = Union([PairBatches(table, budget, seed, rank, 2) for rank in (0, 1)])
    single.fit()
    one = train_losses(tmp_path / "single")
    torch.testing.assert_close(torch.tensor(ddp), torch.tensor(one), rtol=2e-4, atol=2e-4)
