"""``python -m benchmarks.peers``: see :mod:`benchmarks.peers.cli`."""

from .cli import main

raise SystemExit(main())
