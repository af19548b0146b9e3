"""``python -m policyengine``: the same as the ``policyengine`` command.

Owns nothing but the hand-over to :func:`policyengine.cli.main`; imports only that.
"""

import sys

from policyengine.cli import main

sys.exit(main())
