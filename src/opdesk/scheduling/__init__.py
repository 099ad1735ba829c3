"""Scheduling: doctors' availability, slots, holds, bookings (in progress: issue 5)."""
