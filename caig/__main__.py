"""``python -m caig ...`` is the same as the ``caig`` console script."""

import sys

from caig.cli import main

sys.exit(main())
