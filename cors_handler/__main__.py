"""``python -m cors_handler``: same as the ``cors-handler`` command."""

from .tools.cli import entry_point

entry_point()
