"""CLI commands: one module per sub-command.

Each module defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules must stay cheap to
import (no torch/ray at module level) so ``harmbench --help`` is instant; the
heavy library code is imported inside ``run``.
"""
