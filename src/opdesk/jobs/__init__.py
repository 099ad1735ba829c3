"""Work done on a timer rather than a request: the sweepers now, the worker later.

A job is a function of one transaction. :mod:`opdesk.jobs.runner` opens that
transaction, once for the whole database or once per clinic, so one clinic's failure
rolls back only its own part. :mod:`opdesk.jobs.sweeps` lists the jobs ``opdesk sweep``
runs.
"""
