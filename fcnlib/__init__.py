"""fcnlib: the model, data, HHA, training and metric code of the FCN reproduction pipeline."""

__version__ = "0.1.0"
