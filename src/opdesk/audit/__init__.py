"""The tamper-evident audit trail: every write leaves a chained event."""

from opdesk.audit.service import diff_of, record

__all__ = ["diff_of", "record"]
