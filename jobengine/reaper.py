"""The reaper: the process that runs fleet maintenance while it leads.

The services live in ``jobengine.maintenance``; this module keeps existing imports working.
"""

from jobengine.maintenance import Reaper, TickReport

__all__ = ["Reaper", "TickReport"]
