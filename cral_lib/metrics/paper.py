"""The paper's published numbers: Table 1 (per-class AUC of CRAL and of the works it compares with)
and Table 2 (the ablations).

Cited as printed in Guan & Huang, Pattern Recognit. Lett. 130 (2020) 259-266; the book lays
each run beside them (:mod:`cral_lib.metrics.tables`).
"""

from __future__ import annotations

import pandas as pd

from .. import CLASSES
from ..errors import ConfigError

#: Column names of the paper's Table 1, one per class of :data:`cral_lib.CLASSES` in order.
#: "Pne1" is Pneumonia and "Pne2" Pneumothorax, "PT" Pleural_Thickening.
ABBREVIATIONS: dict[str, str] = dict(
    zip(
        CLASSES,
        ("Atel", "Card", "Effu", "Infi", "Mass", "Nodu", "Pne1", "Pne2", "Cons", "Edem", "Emph", "Fibr", "PT", "Hern"),
    )
)

MEAN = "Mean"

# ----------------------------------------------------------------------------- the paper's numbers

#: The works that Table 1 of the paper compares against, by the paper's reference number.
PAPER_REFERENCES: dict[str, str] = {
    "[12]": "S. Guendel et al., Learning to recognize abnormalities in chest X-rays with "
    "location-aware dense networks, arXiv:1803.04565 (2018).",
    "[20]": "Z. Li et al., Thoracic disease identification and localization with limited "
    "supervision, CVPR 2018, pp. 8290-8299.",
    "[30]": "Y. Shen, M. Gao, Dynamic routing on deep neural network for thoracic disease "
    "classification and sensitive area localization, MLMI 2018, pp. 389-397.",
    "[34]": "Y. Tang et al., Attention-guided curriculum learning for weakly supervised "
    "classification and localization of thoracic diseases on chest radiographs, MLMI 2018, pp. 249-258.",
    "[37]": "X. Wang et al., ChestX-ray8: hospital-scale chest X-ray database and benchmarks on "
    "weakly-supervised classification and localization of common thorax diseases, CVPR 2017, pp. 3462-3471.",
    "[45]": "L. Yao et al., Weakly supervised medical diagnosis and localization from multiple "
    "resolutions, arXiv:1803.07703 (2018).",
    "CRAL": "Q. Guan, Y. Huang, Multi-label chest X-ray image classification via category-wise "
    "residual attention learning, Pattern Recognit. Lett. 130 (2020) 259-266.",
}

#: The columns of Table 1: the 14 abbreviated classes and the mean.
T1_COLUMNS = list(ABBREVIATIONS.values()) + [MEAN]
# Transcribed from Table 1 of the paper, row by row, exactly as printed (bold dropped).
# CNN: "R-50" ResNet-50, "D-121" DenseNet-121, "*" a ResNet/DenseNet combination (Yao et al.),
# "–" not stated in the cited work.
_T1_ROWS: list[tuple[str, str, str, str]] = [
    ("Wang et al.", "[37]", "R-50", "0.700 0.810 0.759 0.661 0.693 0.669 0.658 0.799 0.703 0.805 0.833 0.786 0.684 0.872 0.745"),
    ("Guendel et al.", "[12]", "D-121", "0.767 0.883 0.828 0.709 0.821 0.758 0.731 0.846 0.745 0.835 0.895 0.818 0.761 0.896 0.807"),
    ("Yao et al.", "[45]", "*", "0.733 0.856 0.806 0.673 0.718 0.777 0.684 0.805 0.711 0.806 0.842 0.743 0.724 0.775 0.761"),
    ("Li et al.", "[20]", "R-50", "0.727 0.836 0.789 0.672 0.776 0.696 0.649 0.808 0.720 0.806 0.888 0.771 0.737 0.693 0.755"),
    ("Li et al.", "[20]", "D-121", "0.728 0.848 0.782 0.645 0.747 0.702 0.632 0.802 0.727 0.823 0.757 0.763 0.735 0.653 0.739"),
    ("Shen et al.", "[30]", "–", "0.766 0.801 0.797 0.751 0.760 0.741 0.778 0.800 0.787 0.820 0.773 0.765 0.759 0.748 0.775"),
    ("Tang et al.", "[34]", "–", "0.756 0.887 0.819 0.689 0.814 0.755 0.729 0.850 0.728 0.848 0.906 0.818 0.765 0.875 0.803"),
    ("CRAL (att1)", "CRAL", "R-50", "0.779 0.879 0.824 0.694 0.831 0.766 0.726 0.858 0.758 0.850 0.909 0.832 0.778 0.906 0.814"),
    ("CRAL (att2)", "CRAL", "R-50", "0.777 0.875 0.826 0.695 0.825 0.765 0.720 0.852 0.751 0.848 0.905 0.819 0.777 0.908 0.810"),
    ("CRAL (att1)", "CRAL", "D-121", "0.781 0.883 0.831 0.697 0.830 0.764 0.725 0.866 0.758 0.853 0.911 0.826 0.780 0.918 0.816"),
    ("CRAL (att2)", "CRAL", "D-121", "0.781 0.880 0.829 0.702 0.834 0.773 0.729 0.857 0.754 0.850 0.908 0.830 0.778 0.917 0.816"),
]


def _paper_table1() -> pd.DataFrame:
    records = []
    for method, ref, cnn, values in _T1_ROWS:
        numbers = [float(v) for v in values.split()]
        assert len(numbers) == len(T1_COLUMNS)
        records.append({"method": method, "reference": ref, "CNN": cnn, **dict(zip(T1_COLUMNS, numbers))})
    return pd.DataFrame.from_records(records, columns=["method", "reference", "CNN", *T1_COLUMNS])


#: Table 1 of the paper: per-class test AUC on ChestX-ray14 (official split) and the mean, one
#: row per published result, with columns ``method``, ``reference`` (the paper's reference
#: number, see :data:`PAPER_REFERENCES`; "CRAL" for the paper itself), ``CNN`` and the 14
#: abbreviated classes of :data:`ABBREVIATIONS` plus ``Mean``. Numbers as printed (3 decimals);
#: the bold face is not kept. (The paper bolds Guendel et al.'s 0.709 for Infiltration and 0.731
#: for Pneumonia although Shen et al.'s row prints 0.751 and 0.778; :func:`format_table`
#: marks the largest value of each column.)
PAPER_TABLE1: pd.DataFrame = _paper_table1()

#: Table 2 of the paper: mean test AUC of the ablations. Rows: ``CRAL`` (the full model),
#: ``w/o category`` (one attention map shared by all classes), ``w/o residual`` (H = A (.) F),
#: ``w/o attention`` (the plain backbone: the baseline, the same for att1 and att2).
PAPER_TABLE2: pd.DataFrame = pd.DataFrame(
    [
        [0.8136, 0.8102, 0.8157, 0.8157],
        [0.8114, 0.8093, 0.8135, 0.8136],
        [0.8069, 0.8052, 0.8069, 0.8073],
        [0.8034, 0.8034, 0.8056, 0.8056],
    ],
    index=pd.Index(["CRAL", "w/o category", "w/o residual", "w/o attention"], name="method"),
    columns=["R-50 att1", "R-50 att2", "D-121 att1", "D-121 att2"],
)

_BACKBONE_ABBR = {
    "resnet50": "R-50",
    "r-50": "R-50",
    "r50": "R-50",
    "densenet121": "D-121",
    "d-121": "D-121",
    "d121": "D-121",
}
_VARIANT_ROW = {
    "cral": "CRAL",
    "no_category": "w/o category",
    "no_residual": "w/o residual",
    "no_attention": "w/o attention",
}


def _backbone_abbr(backbone: str) -> str:
    key = str(backbone).lower().replace("_", "")
    if key not in _BACKBONE_ABBR:
        raise ConfigError(
            f"backbone={backbone!r}: the paper reports ResNet-50 and DenseNet-121 only; "
            "use 'resnet50' or 'densenet121'."
        )
    return _BACKBONE_ABBR[key]


def _attention_name(attention: str) -> str:
    att = str(attention).lower()
    if att not in ("att1", "att2"):
        raise ConfigError(f"attention={attention!r}: the paper reports 'att1' and 'att2'; use one of them.")
    return att


def paper_row(backbone: str = "resnet50", attention: str = "att1") -> pd.Series:
    """Return the paper's per-class AUCs of CRAL for one backbone and attention (Table 1).

    Args:
        backbone: ``"resnet50"`` or ``"densenet121"``.
        attention: ``"att1"`` or ``"att2"``.

    Returns:
        A Series indexed by the full class names of :data:`cral_lib.CLASSES` plus ``"Mean"``.
    """
    cnn, att = _backbone_abbr(backbone), _attention_name(attention)
    table = PAPER_TABLE1
    row = table[(table["reference"] == "CRAL") & (table["CNN"] == cnn) & (table["method"] == f"CRAL ({att})")]
    values = row.iloc[0][T1_COLUMNS].astype(float).to_numpy()
    return pd.Series(values, index=[*CLASSES, MEAN], name=f"paper: CRAL ({att}) {cnn}")


def paper_auc(backbone: str = "resnet50", attention: str = "att1", variant: str = "cral") -> float:
    """Return the paper's mean AUC of one ablation setting (Table 2).

    Args:
        backbone: ``"resnet50"`` or ``"densenet121"``.
        attention: ``"att1"`` or ``"att2"`` (ignored by the paper's baseline, ``no_attention``,
            whose two columns are equal).
        variant: ``"cral"``, ``"no_category"``, ``"no_residual"`` or ``"no_attention"``
            (the names of ``cral train --variant``).

    Returns:
        The mean AUC over the 14 classes, as printed (4 decimals).
    """
    if variant not in _VARIANT_ROW:
        raise ConfigError(f"variant={variant!r}: use one of {sorted(_VARIANT_ROW)}.")
    column = f"{_backbone_abbr(backbone)} {_attention_name(attention)}"
    return float(PAPER_TABLE2.loc[_VARIANT_ROW[variant], column])


__all__ = ["ABBREVIATIONS", "MEAN", "PAPER_REFERENCES", "PAPER_TABLE1", "PAPER_TABLE2", "T1_COLUMNS", "paper_auc",
           "paper_row"]
