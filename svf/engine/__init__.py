"""The engine: what runs on a device, in three rooms.

- ``loop/``: the training loop every run shares (``fit``, its hooks and checkpoints, the learning-rate schedules,
  loss groups and micro-batches, precision, the device); it knows nothing of cells or methods.
- ``tasks/``: what a job does with it: train a cell, BAM's base learner or the demo's backbone, evaluate a cell,
  probe it; and what they share (a cell's network, its loaders, the episode scores, the validation cache, the
  evaluation protocols).
- ``tools/``: measurements of the tasks (``svf estimate``, ``svf bench``).

``commands.py`` holds the engine's ``svf`` commands (imported by the CLI; the rooms are imported inside them).
"""
