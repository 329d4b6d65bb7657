"""Schedules: cadences in a zone, fired once per slot by the leader.

``slots`` says which instants a cadence fires at (the daylight-saving rule lives there);
``errors`` holds the refusals, each naming the field that was wrong.
"""
