"""seq2seq: recurrent sequence models (LSTM translation, language modelling, regression) on one shared core."""

__version__ = "0.1.0"
