"""python -m seq2seq.forecast RUN_DIR [--checkpoint best|last|FILE] [--horizon N] [--out DIR]

Runs the S&P 500 lab's three forecasts on the test span of a regression run (point by point, full sequence,
multi-sequence of N-day fans; N defaults to the window) and scores them next to persistence, drift and "always
up" on the same windows. Writes predictions.csv, scores.json and three PNGs to DIR (default RUN_DIR/forecast) and
prints the tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seq2seq.cli import ArgumentParser, check_runs, non_negative_int, run_cli
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m seq2seq.forecast", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", default="best",
                        help="best | last | averaged (train.keep_checkpoints) | path to a .pt file")
    parser.add_argument(
        "--horizon", type=non_negative_int, default=0, help="days per multi-sequence fan (default: the window)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default RUN_DIR/forecast)")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    check_runs([args.run_dir], args.checkpoint)  # a run or checkpoint that is not there: a usage error (exit 2)
    apply(runtime_from_args(args))  # the options, else the defaults: not the recipe of the machine that trained
    from seq2seq.forecasting import forecast, report
    from seq2seq.tasks import get, series_split

    recipe, model, scaler = get("regression").load(args.run_dir, args.checkpoint)
    series, split = series_split(recipe)
    window = recipe.data.window
    result = forecast(model, series, split, scaler, window, args.horizon or window)
    print(report(result, args.out or args.run_dir / "forecast"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
