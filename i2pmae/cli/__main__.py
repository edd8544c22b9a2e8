"""``python -m i2pmae.cli``: the same as the ``i2pmae`` command."""

import sys

from . import main

sys.exit(main())
