"""``python -m trafficunit.cli``: the same as the ``trafficunit`` command."""

from . import main

main()
