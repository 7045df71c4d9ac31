"""Whether the services write pynetdicom's "standard" log lines.

pynetdicom logs each request sent and each response received at INFO through
its "standard" log handler level; an application that sets
``_config.LOG_HANDLER_LEVEL = "none"`` gets none of those lines (see
:mod:`dicombus.config`). The services read the setting when a line is due.
"""

from __future__ import annotations

from dicombus import config


def standard_logging() -> bool:
    """True while ``config.LOG_HANDLER_LEVEL`` is "standard"."""
    return config.LOG_HANDLER_LEVEL == "standard"
