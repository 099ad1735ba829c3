"""Consents: versioned templates per clinic, signed copies, revocation."""
