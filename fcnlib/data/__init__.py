"""Datasets: the one loader (SegDataset over a dataset.json) and the raw → dataset.json prepare steps.

Only the loader is imported eagerly; the prepare modules (voc, sbd, nyud, siftflow, context) are
imported by whoever needs them, so importing fcnlib.data stays cheap on the training hot path.
"""

from fcnlib.data.dataset import SegDataset, collate_pad, load_dataset_meta, read_ids

__all__ = ["SegDataset", "collate_pad", "load_dataset_meta", "read_ids"]
