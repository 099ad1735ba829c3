"""ABDM integration."""
