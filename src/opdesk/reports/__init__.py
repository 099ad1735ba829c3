"""Reports: the dashboard's figures, its charts and the monthly summary PDF."""
