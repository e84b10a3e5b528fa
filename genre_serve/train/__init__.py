"""Training: the retrieval model, the ranker, and run directories."""
