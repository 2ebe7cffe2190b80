"""Method-comparison studies: a YAML grid (or a shipped preset) of tasks x methods x models x seeds,
each cell run as its own ``tunelab run`` process, results in ``OUTPUT_DIR/results.sqlite``."""
