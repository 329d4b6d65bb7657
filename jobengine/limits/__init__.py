"""Rate limits: token buckets, global across the fleet, that admit jobs ``pending → scheduled``.

``definition`` says what a limit is and which jobs it applies to; ``cache`` keeps each
process's copy of the definitions fresh within seconds; ``admission`` takes the slots of a
submission's jobs in its own transaction, from this process's token ``leases`` while a limit
is far from biting; ``pacing`` makes the promoter book again the slots of a job it admits
later than its limits tolerate; ``registry`` sets, lists and deletes limits and
reads each one's tokens, waiting units and next admission, which ``views`` shows as REST
fields and ``metrics`` as ``/metrics`` gauges.
"""
