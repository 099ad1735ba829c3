"""Documents: uploads with versions, encrypted storage, and expiring share links."""
