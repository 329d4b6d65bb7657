"""Schedules: cadences in a zone, fired once per slot by the leader.

``slots`` says which instants a cadence fires at (the daylight-saving rule lives there);
``definition`` what a schedule is and the job or run each slot creates; ``registry`` creates,
edits, pauses and deletes schedules (none of which fires a slot); ``firing`` decides a
schedule's due slots exactly once, for the leader's ``maintenance.scheduler``; ``metrics``
shows them on ``/metrics``; ``errors`` holds the refusals, each naming the field that was wrong.
"""
