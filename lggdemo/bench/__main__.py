"""``python -m lggdemo.bench``."""

from lggdemo.bench.cli import main

raise SystemExit(main())
