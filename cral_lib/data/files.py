"""The files of a ChestX-ray14 release: their names and their exact headers, as NIH writes them.

Defined once for everything that reads or writes a release: the readers
(:mod:`cral_lib.data.release`), the synthetic writer (:mod:`cral_lib.synthetic`), the
downloader (:mod:`cral_lib.fetch`) and the command line. This module imports nothing heavy,
so that ``cral --help`` can name them.
"""

from __future__ import annotations

import re

#: Names of the metadata CSV, the preferred (newer) one first.
CSV_NAMES: tuple[str, ...] = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
#: The metadata CSV that ``cral synth`` and ``cral download`` write (NIH's current copy).
DATA_ENTRY = CSV_NAMES[0]
#: The official split lists and the box list.
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_CSV = "BBox_List_2017.csv"

#: The name of an image archive's folder: ``images_001`` ... ``images_012``.
IMAGE_FOLDER_RE = re.compile(r"^images_\d{3}$")

#: The header line of ``Data_Entry_2017_v2020.csv`` exactly as NIH writes it.
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)

#: The header line of ``BBox_List_2017.csv`` exactly as NIH writes it (9 fields, 3 empty).
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"

#: The columns of the metadata CSV, in file order (the bracketed pairs of the header,
#: ``OriginalImage[Width,Height]`` and ``OriginalImagePixelSpacing[x,y]``, are two columns each).
CSV_COLUMNS: tuple[str, ...] = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImageWidth",
    "OriginalImageHeight",
    "OriginalImagePixelSpacingX",
    "OriginalImagePixelSpacingY",
)
#: Box labels spelled differently from the class names.
BOX_LABEL_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration"}


__all__ = [
    "BBOX_CSV",
    "BBOX_HEADER",
    "BOX_LABEL_ALIASES",
    "CSV_COLUMNS",
    "CSV_NAMES",
    "DATA_ENTRY",
    "DATA_ENTRY_HEADER",
    "IMAGE_FOLDER_RE",
    "TEST_LIST",
    "TRAIN_VAL_LIST",
]
