"""seq2seq: recurrent sequence models (LSTM translation, language modelling, regression) on one shared core."""

import os

# oneDNN (torch's CPU kernels for bf16 matrix products and LSTM layers) compiles a kernel for every new shape and
# keeps the last 1,024 of them. A translation training step on Multi30k needs about 15 kernels per batch shape and
# sees about 140 batch shapes per epoch, the same in every epoch, so the default cache evicted kernels before their
# shape came back and every step compiled again: with room for 8,192, steps after the first epoch run 5-12% faster
# (docs/speed.md). Read when oneDNN builds its first kernel, so it must be set before then; a value in the
# environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")

__version__ = "0.1.0"
