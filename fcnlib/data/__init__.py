"""Datasets: the one loader (SegDataset over a dataset.json, transforms, split lists), the raw → dataset.json
prepare steps (`prepare/`: one module per dataset, and the one entry the workflow calls) and the HHA depth
encoding (`hha/`: the encoder and its geometry).

Only the loader is imported eagerly; prepare and hha modules are imported by whoever needs them, so
importing fcnlib.data stays cheap on the training hot path.
"""

from fcnlib.data.dataset import SegDataset, collate_pad, load_dataset_meta, read_ids

__all__ = ["SegDataset", "collate_pad", "load_dataset_meta", "read_ids"]
