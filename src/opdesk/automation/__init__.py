"""Durable timers (the seed's ``automation_events``) and the worker that runs them."""
