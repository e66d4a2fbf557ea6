"""Checkpoints: plain dicts of state_dicts, the recipe and the tokenizer models; never pickled code.

    {"format": 1, "recipe": {...}, "tokenizers": {"src": bytes, "tgt": bytes}, "model": state_dict,
     "optimizer": state_dict, "trainer": {...}, "rng": {...}}

Writes are atomic (a temporary file, then a rename), so a run killed mid-write keeps its previous checkpoint.
Loading uses `weights_only=True`: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = 1


class CheckpointError(RuntimeError):
    pass


def save(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zips, bad pickles, foreign files all land here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a seq2seq checkpoint ({type(e).__name__}: {e}). "
            f"If it is last.pt of an interrupted run, best.pt in the same folder may still be intact."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise CheckpointError(f"{path} is not a seq2seq checkpoint of format {FORMAT}")
    return payload


def find(run_dir: str | Path, which: str = "best") -> Path:
    """`which` is best | last | a file path."""
    candidate = Path(which)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; train one with python -m seq2seq.train")
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        have = sorted(p.name for p in run_dir.glob("*.pt"))
        raise CheckpointError(f"{run_dir} has no {which}.pt (it has: {', '.join(have) or 'no checkpoints'})")
    return path
