"""``python -m robot_offrl_cli`` is the ``robot-offrl`` command (e.g. under torchrun)."""

import sys

from robot_offrl_cli.main import main

sys.exit(main())
