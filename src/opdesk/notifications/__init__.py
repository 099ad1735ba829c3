"""Messages to patients and staff: the outbox (delivery comes with the worker)."""
