"""Where the torchxrayvision wheel keeps the real ChestX-ray14 metadata and lung masks.

The PyPI package ``torchxrayvision`` carries, in its ``data`` folder, the release's metadata
(:data:`METADATA_FILE`), its boxes (:data:`BBOX_FILE`) and 517 lung masks (:data:`LUNG_MASK_FILE`).
The folder is found with :func:`importlib.util.find_spec`, without importing torchxrayvision (its
import is heavy); this module imports nothing else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import DataError

#: The files inside torchxrayvision's ``data`` folder: the metadata, the boxes, the lung masks.
METADATA_FILE = "Data_Entry_2017_v2020.csv.gz"
BBOX_FILE = "BBox_List_2017.csv.gz"
LUNG_MASK_FILE = "semantic_masks_v7labs_lungs.zip"


def torchxrayvision_data_dir() -> Path:
    """Return the ``data`` folder inside the installed torchxrayvision package.

    The package is located without being imported.

    Returns:
        The folder that holds the metadata tables and the lung-mask archive.

    Raises:
        DataError: torchxrayvision is not installed, or its ``data`` folder is missing.
    """
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the real NIH metadata ships inside the torchxrayvision package, which is not "
            "installed; run: pip install torchxrayvision"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not folder.is_dir():
        raise DataError(
            f"torchxrayvision is installed but has no data folder at {folder}; "
            "reinstall it: pip install --force-reinstall torchxrayvision"
        )
    return folder


def data_file(name: str) -> Path:
    path = torchxrayvision_data_dir() / name
    if not path.is_file():
        raise DataError(
            f"{path} is missing from the torchxrayvision package; reinstall it: "
            "pip install --force-reinstall torchxrayvision"
        )
    return path


__all__ = ["BBOX_FILE", "LUNG_MASK_FILE", "METADATA_FILE", "data_file", "torchxrayvision_data_dir"]
