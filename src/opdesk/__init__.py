"""OPDesk: outpatient clinic system for Indian clinics."""
