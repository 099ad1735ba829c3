"""Billing: invoices with GST, payments (cash, card, UPI, payment links), refunds and the
patient ledger (seed `invoices`, `payments`, `ledger_entries`)."""
