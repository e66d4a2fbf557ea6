"""The same as `seq2seq-average` or `python -m seq2seq.average` (seq2seq/average.py), for commands written before it."""
from seq2seq.average import main

if __name__ == "__main__":
    raise SystemExit(main())
