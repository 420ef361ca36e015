"""``python -m lggdemo.train``."""

from lggdemo.train.cli import main

raise SystemExit(main())
