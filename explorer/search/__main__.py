"""``python -m explorer.search SPEC [options]`` (see ``explorer.search.cli``)."""

import sys

from explorer.search.cli import main

sys.exit(main())
