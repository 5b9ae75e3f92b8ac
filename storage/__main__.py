"""``python -m storage convert|info|verify``: see ``storage.cli``."""
import sys

from storage.cli import main

sys.exit(main())
