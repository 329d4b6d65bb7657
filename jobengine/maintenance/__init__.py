"""Fleet maintenance, run by the one elected leader among the reapers (River's layout).

One module per service, each paging by id and erroring per row, never per tick:
``leadership`` (the lease row), ``rescuer`` (expired leases), ``scheduler`` (schedules' due
slots), ``promoter`` (due pending jobs), ``broker_epoch`` (a broker that lost its data),
``dispatcher`` (messages for scheduled jobs), and ``service`` (the loop that runs them and
survives its database).
"""

from jobengine.maintenance.leadership import Leadership, LeadershipLost
from jobengine.maintenance.report import SetAside, TickReport
from jobengine.maintenance.service import Reaper

__all__ = ["Leadership", "LeadershipLost", "Reaper", "SetAside", "TickReport"]
