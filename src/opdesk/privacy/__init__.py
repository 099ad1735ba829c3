"""A patient's data: the export of everything the clinic holds about them (DPDP access)."""
