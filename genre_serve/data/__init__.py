"""Data: loading, cleaning, id mapping, splits, and the synthetic generator."""

from genre_serve.data.dataset import CleaningReport, DataConfig, Dataset, build_dataset
from genre_serve.data.idmap import IdMap
from genre_serve.data.loaders import load_builtin, load_csv_dataset, load_movielens, read_table
from genre_serve.data.split import Split, leave_last_out, time_split

__all__ = [
    "CleaningReport",
    "DataConfig",
    "Dataset",
    "IdMap",
    "Split",
    "build_dataset",
    "leave_last_out",
    "load_builtin",
    "load_csv_dataset",
    "load_movielens",
    "read_table",
    "time_split",
]
