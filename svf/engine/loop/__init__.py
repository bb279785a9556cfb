"""The training loop of every run and what it is made of: ``fit`` (the loop, its hooks, checkpoints and resume),
``schedule`` (learning rates), ``batching`` (loss groups, micro-batches), ``precision`` and ``device``. Nothing here
knows a cell, a method or a dataset."""
