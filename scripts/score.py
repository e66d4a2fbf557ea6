"""The same as `seq2seq-score` or `python -m seq2seq.score` (seq2seq/score.py), for commands written before it."""
from seq2seq.score import main

if __name__ == "__main__":
    raise SystemExit(main())
