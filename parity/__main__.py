"""``python -m parity``: the parity report."""

import sys

from parity.report import main

sys.exit(main())
