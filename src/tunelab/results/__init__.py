"""Run records (run.json) and the results store."""
