"""``python -m lggdemo.longitudinal BASELINE FOLLOWUP --out DIR``: the compare command (``longitudinal.cli``)."""

from lggdemo.longitudinal.cli import main

raise SystemExit(main())
