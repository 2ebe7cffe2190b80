"""Training: the loop, resource meters."""
