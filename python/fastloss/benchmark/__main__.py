"""``python -m fastloss.benchmark``: the same as ``fastloss bench``."""

import sys

from .command import main

sys.exit(main())
