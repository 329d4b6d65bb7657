"""The audit log: who did what to which object, from which surface, done or refused.

Every operator and administrative act writes one ``audit_entries`` row in the transaction
that does it (``record``), so an act that rolls back leaves no "done" entry; a refusal is
written in its own transaction (``record_refusal``), since the act's was rolled back.
"""

from jobengine.audit.actions import ACTIONS, Action, action
from jobengine.audit.origin import Origin, Surface
from jobengine.audit.record import record, record_refusal

__all__ = [
    "ACTIONS",
    "Action",
    "Origin",
    "Surface",
    "action",
    "record",
    "record_refusal",
]
