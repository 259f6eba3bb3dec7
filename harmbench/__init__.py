"""harmbench: benchmark and dataset toolkit for image harmonization.

Data flows one way through the sub-packages::

    sources -> transfer/recipes -> build (shards) -> data (loaders)
            -> models -> eval (per-sample records) -> leaderboard (tables, plots)

``metrics`` is used by ``eval``, ``train`` and ``bench``.
"""

__version__ = "0.1.0"
