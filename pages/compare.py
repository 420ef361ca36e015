"""Compare two scans: a baseline and a follow-up of one patient, registered, segmented, the change measured."""

from lggdemo.ui.compare import render_page
from lggdemo.ui.shell import require_shell

require_shell()

render_page()
