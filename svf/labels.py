"""The label values every part of the package agrees on (masks, episodes, losses, scores)."""

IGNORE_LABEL = 255  # void: PASCAL's object borders, padding, rotation fill; never scored, never a class

__all__ = ["IGNORE_LABEL"]
