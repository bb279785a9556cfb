"""Measurements of the tasks: ``estimate`` (``svf estimate``: every kind of cell timed by ``timing``, device-hours
projected), ``val_bench`` and ``step_bench`` (``svf bench``)."""
