"""Running OPDesk for years: production start checks, backup and restore, health."""
