"""Datasets: loaders for staged, official and generic formats, and their downloads.

    >>> from pocketrec.distill.data import load_dataset
    >>> beauty = load_dataset("beauty")          # reads $POCKETREC_DATA/amazon2014_beauty
    >>> beauty.num_users, beauty.item_text[0].title

Needs numpy only; progress bars appear when tqdm is installed.
"""

from pocketrec.distill.data._dataset import Dataset, ItemText, build_dataset
from pocketrec.distill.data._download import default_cache_dir, download_dataset
from pocketrec.distill.data._registry import DATA_ENV, dataset_folder, list_datasets, load_dataset

__all__ = [
    "DATA_ENV",
    "Dataset",
    "ItemText",
    "build_dataset",
    "dataset_folder",
    "default_cache_dir",
    "download_dataset",
    "list_datasets",
    "load_dataset",
]
