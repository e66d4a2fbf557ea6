"""seq2seq: recurrent sequence models (LSTM translation, language modelling, regression) on one shared core.

Importing the package or any of its modules changes nothing in the process (no environment variable, no thread
count, no timing run): the process-wide settings are `seq2seq.runtime.apply`'s, which each command calls at start.
"""

__version__ = "0.1.0"
