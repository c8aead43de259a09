"""``python -m launcher``: the ``fate-registry`` command."""

import sys

from launcher.main import main

sys.exit(main())
