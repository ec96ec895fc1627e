"""``python -m localkube``: see :mod:`localkube.cli`."""

import sys

from localkube.cli import main

sys.exit(main())
