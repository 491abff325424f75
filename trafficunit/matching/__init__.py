"""Map matching: GPS traces onto traffic units (:func:`match_trace`; see :mod:`.core`)."""

from .core import MATCH_STATES, match_trace

__all__ = ["MATCH_STATES", "match_trace"]
