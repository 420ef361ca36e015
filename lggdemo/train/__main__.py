"""``python -m lggdemo.train`` (also as torchrun's ``-m lggdemo.train``: each rank ends with rank 0's outcome)."""

from lggdemo.train.cli import main
from lggdemo.train.distributed import finish

raise SystemExit(finish(main()))
