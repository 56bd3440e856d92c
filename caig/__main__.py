"""``python -m caig ...`` is the same as the ``caig`` console script."""

from caig.cli import entry

entry()
