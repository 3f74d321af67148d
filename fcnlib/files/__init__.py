"""Bytes on disk and over the wire: atomic writes, images/labels, archives, downloads."""
