"""The clinical pages and API routers, one module per area."""
