"""fcnlib: the model, data, HHA, training and metric code of the FCN reproduction pipeline.

`fcnlib.Segmenter(weights)(image)` → a Segmentation (labels, scores, classes, overlay()); see the README.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Segmentation", "Segmenter", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import fcnlib` (every `fcn` command, every workflow script) stays free of torch.
    if name in ("Segmenter", "Segmentation"):
        from fcnlib.eval import segment  # (see above: lazy)

        return getattr(segment, name)
    raise AttributeError(f"module 'fcnlib' has no attribute {name!r}")
