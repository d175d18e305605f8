"""``python -m bridge.bench``: the same as the ``bridge-bench`` command."""

from bridge.bench.cli import main

raise SystemExit(main())
