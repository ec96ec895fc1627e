"""``python -m queuejob_kubectl``: the same as the ``kubectl-queuejob`` command."""

import sys

from queuejob_kubectl.cli import main

sys.exit(main())
