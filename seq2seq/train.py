"""python -m seq2seq.train RECIPE.yaml [section.key=value ...] [--run-dir DIR] [--resume [--allow-changes]]

The recipe's `runtime:` section (threads, allocator, tanh, oneDNN's cache, the int8 kernel) is applied first; the
options of the same name win over it.

Several processes (CPUs with gloo, GPUs with NCCL), each reading its own share of the batches:
    torchrun --nproc_per_node 4 -m seq2seq.train RECIPE.yaml

One training per run directory (RUN_DIR/.lock): a second one is refused, naming the first one's pid. The first
Ctrl-C or SIGTERM finishes the step, saves last.pt and stops (--resume continues); a second one exits at once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from seq2seq.checkpoint import lock_run_dir
from seq2seq.cli import ArgumentParser, run_cli
from seq2seq.config import ConfigError, RuntimeConfig, load_recipe
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args


def start_distributed() -> tuple[int, int]:
    """Under torchrun (RANK and WORLD_SIZE set): join the process group, NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


# What a resumed run may change: where and how long it runs and its process settings, not what it trains.
RESUMABLE_CHANGES = {"name", "train.device", "train.max_minutes", "train.max_steps", "train.log_every",
                     *(f"runtime.{f.name}" for f in dataclasses.fields(RuntimeConfig))}


def check_same_run(recipe, run_dir: Path, allow: bool = False) -> None:
    """--resume with a recipe that trains something else than the run (another batch size, model or schedule) would
    silently mix two experiments in one run directory: refuse, naming the differences, unless --allow-changes
    (continuing a copied run with, say, scheduled sampling on), which prints them."""
    stored = run_dir / "recipe.yaml"
    if not stored.exists():
        return
    before, now = _flat(load_recipe(stored, saved=True).to_dict()), _flat(recipe.to_dict())
    changed = [f"{k} {before.get(k)} -> {now.get(k)}" for k in sorted(before.keys() | now.keys())
               if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES]  # fmt: skip
    if changed and allow:
        print(f"resuming with changes to the run's recipe: {', '.join(changed)}", flush=True)
    elif changed:
        raise ConfigError(
            f"--resume: this recipe differs from the run's ({stored}): {', '.join(changed)}. "
            f"Resume with the run's own recipe: python -m seq2seq.train {stored} --run-dir {run_dir} --resume "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES - {'name'}))} may change), add --allow-changes to continue "
            f"with the differences on purpose, or start a new run with --run-dir"
        )


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_run_dir(run_dir: Path, resume: bool) -> None:
    if not resume and (run_dir / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or --run-dir for a new one")
    if resume and not (run_dir / "last.pt").exists():
        raise ConfigError(f"--resume: {run_dir} has no last.pt to continue from")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m seq2seq.train", description=__doc__)
    parser.add_argument("recipe", help="a YAML recipe, e.g. recipes/en-fr.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=200")
    parser.add_argument("--run-dir", type=Path, help="where checkpoints and logs go (default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--allow-changes", action="store_true",
                        help="with --resume: continue even where the recipe differs from the run's (printed)")
    add_runtime_options(parser)
    args = parser.parse_intermixed_args(argv)  # overrides may follow --run-dir
    recipe = load_recipe(args.recipe, args.overrides)
    run_dir = args.run_dir or Path("runs") / recipe.name
    check_run_dir(run_dir, args.resume)
    apply(runtime_from_args(args, recipe.runtime))  # before torch builds its first kernel
    from seq2seq.tasks import build_training, resolve_device  # heavy imports once the recipe is valid

    if recipe.train.precision == "fp16" and resolve_device(recipe.train.device).type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA GPU, and torch sees none; use bf16 or fp32")
    # One training per run directory: rank 0 (the only writer) holds RUN_DIR/.lock until it exits
    with lock_run_dir(run_dir) if int(os.environ.get("RANK", "0")) == 0 else nullcontext():
        check_run_dir(run_dir, args.resume)  # again under the lock: another start may have got there first
        if args.resume:
            check_same_run(recipe, run_dir, args.allow_changes)
        rank, world = start_distributed()
        if rank == 0:
            print(f"run directory: {run_dir}" + (f" ({world} processes)" if world > 1 else ""), flush=True)
        build_training(recipe, run_dir, args.resume, rank, world).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
