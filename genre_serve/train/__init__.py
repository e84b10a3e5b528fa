"""Training: the retrieval model, the fusion fit on validation, the ranker
(the run directory they write: genre_serve.formats.run_dir)."""
