"""Patients: registration, search, family links, soft delete."""
