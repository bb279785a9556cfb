"""The jobs of the workflow on top of the loop: ``train`` (a cell), ``base_learner`` (BAM's stage 1), ``pretrain``
(the demo's backbone), ``evaluate``, ``probe``; and what they share: ``build`` (a cell's network), ``loaders``,
``protocols`` (the evaluation protocols), ``scoring`` and ``metrics`` (episode scores), ``feature_cache``."""
