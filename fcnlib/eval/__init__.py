"""Scoring weights: inference, metrics, evaluation, segmentation, the authors' released nets."""
