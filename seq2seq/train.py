"""python -m seq2seq.train RECIPE.yaml [section.key=value ...] [--run-dir DIR] [--resume]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.config import ConfigError, load_recipe
from seq2seq.data.corpora import DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seq2seq.train", description=__doc__)
    parser.add_argument("recipe", help="a YAML recipe, e.g. recipes/en-fr.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=200")
    parser.add_argument("--run-dir", type=Path, help="where checkpoints and logs go (default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    args = parser.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        run_dir = args.run_dir or Path("runs") / recipe.name
        if not args.resume and (run_dir / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or --run-dir for a new one")
        if args.resume and not (run_dir / "last.pt").exists():
            raise ConfigError(f"--resume: {run_dir} has no last.pt to continue from")
        from seq2seq.build import build_training  # heavy imports only once the recipe is known to be valid

        print(f"run directory: {run_dir}", flush=True)
        build_training(recipe, run_dir, args.resume).fit()
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
