"""``python -m queuejob_demo``: see :mod:`queuejob_demo.demo`."""

import sys

from queuejob_demo.demo import main

sys.exit(main())
