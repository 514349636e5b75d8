"""``python -m devhost emulator|local-settings``: see devhost/localdev.py."""

import sys

from .localdev import main

sys.exit(main())
