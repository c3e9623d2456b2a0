"""Radiology image-report pairs in their datasets' own layouts: CheXpert (and CheXpert Plus) and MIMIC-CXR-JPG,
read as `PairedCSV` (datamodules/paired.py) reads any CSV of images and texts (moved out of paired.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contrastlab.datamodules.manifest import need_columns, read_csv
from contrastlab.datamodules.paired import PairedCSV, label_value
from contrastlab.errors import DataError

CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)  # fmt: skip


class CheXpert(PairedCSV):
    """CheXpert (Irvin et al. 2019) with reports: CheXpert Plus's CSV (`path_to_image`, `section_findings`,
    `section_impression`), or any CSV in CheXpert's layout (`Path`, the 14 observation columns) with a report
    column. Paths such as `CheXpert-v1.0-small/train/patient00001/...` are read from `root`, or from its parent
    when they start with root's own folder name. The 14 observations are the multi-label targets.

    Args:
        csv: the CSV (e.g. `df_chexpert_plus_240401.csv`, or CheXpert's `train.csv` joined with reports).
        path_column: `Path` (CheXpert) or `path_to_image` (CheXpert Plus); the default finds either.
        text_columns: the report's sections, joined (default findings then impression).
        label_columns: default the 14 CheXpert observations (present in the CSV).
        name: the dataset's name, the MLflow experiment (chexpert).
    """

    def __init__(
        self,
        csv: str,
        path_column: str | None = None,
        text_columns: list[str] | None = None,
        label_columns: list[str] | None = None,
        name: str = "chexpert",
        **kwargs,
    ):
        columns, _ = read_csv(Path(csv).expanduser(), "data.csv")
        path_column = path_column or ("Path" if "Path" in columns else "path_to_image")
        text_columns = text_columns or ["section_findings", "section_impression"]
        if label_columns is None:
            label_columns = [c for c in CHEXPERT_LABELS if c in columns]
        super().__init__(
            csv, path_column=path_column, text_columns=text_columns, label_columns=label_columns, name=name, **kwargs
        )

    def resolve(self, name: str) -> Path:
        path = super().resolve(name)
        first = Path(name.strip()).parts[0] if name.strip() else ""
        if not path.is_file() and first == self.root.name:
            return self.root.parent / name.strip()
        return path


class MIMICCXR(PairedCSV):
    """MIMIC-CXR-JPG (Johnson et al. 2019) with its free-text reports, read from the dataset's own files:

    - `root/mimic-cxr-2.0.0-split.csv` (dicom_id, study_id, subject_id, split: train/validate/test),
    - `root/mimic-cxr-2.0.0-chexpert.csv` (subject_id, study_id, the 14 CheXpert observations; optional),
    - images `root/files/p10/p10000032/s50414267/<dicom_id>.jpg`,
    - reports `reports_root/files/p10/p10000032/s50414267.txt` (mimic-cxr-reports.zip, unzipped; default root).

    The text is the report's FINDINGS and IMPRESSION sections (ConVIRT's choice), the whole report when it has
    neither. `views` of MIMIC's metadata CSV is not read: every image of a study pairs with its report.
    """

    def __init__(
        self,
        root: str,
        reports_root: str | None = None,
        max_studies: int | None = None,
        name: str = "mimic_cxr",
        **kwargs,
    ):
        folder = Path(root).expanduser()
        super().__init__(str(folder / "mimic-cxr-2.0.0-split.csv"), root=str(folder), name=name, **kwargs)
        self.reports_root = Path(reports_root).expanduser() if reports_root else folder
        self.max_studies = max_studies
        self.label_columns = self.label_columns or (
            list(CHEXPERT_LABELS) if (folder / "mimic-cxr-2.0.0-chexpert.csv").is_file() else []
        )

    def read_table(self) -> list[dict[str, Any]]:
        columns, rows = read_csv(self.csv, "data.root")
        need_columns(columns, [("root", c) for c in ("dicom_id", "study_id", "subject_id", "split")], self.csv)
        labels: dict[str, list[int]] = {}
        if self.label_columns:
            label_csv = self.root / "mimic-cxr-2.0.0-chexpert.csv"
            label_cols, label_rows = read_csv(label_csv, "data.root")
            need_columns(label_cols, [("label_columns", c) for c in self.label_columns], label_csv)
            labels = {
                r["study_id"]: [label_value(r[c] or "", self.uncertain) for c in self.label_columns] for r in label_rows
            }
        table, studies = [], set()
        for row in rows:
            subject, study = row["subject_id"], row["study_id"]
            if self.max_studies is not None and study not in studies and len(studies) >= self.max_studies:
                continue
            studies.add(study)
            study_dir = Path("files") / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
            report = self.reports_root / study_dir.with_suffix(".txt")
            if not report.is_file():
                raise DataError(f"data.reports_root: report {report} not found; unzip mimic-cxr-reports.zip there")
            table.append(
                {
                    "path": self.root / study_dir / f"{row['dicom_id']}.jpg",
                    "text": report_sections(report.read_text(encoding="utf-8", errors="replace")),
                    "y": labels.get(study, [0] * len(self.label_columns)) if self.label_columns else -1,
                    "split": row["split"],
                }
            )
        return table


def report_sections(report: str, sections: tuple[str, ...] = ("FINDINGS", "IMPRESSION")) -> str:
    """The named sections of a radiology report ("FINDINGS: ..."), joined; the whole text when none is found."""
    import re

    found = []
    for name in sections:
        match = re.search(rf"{name}\s*:(.*?)(?=\n\s*[A-Z][A-Z /]+:|\Z)", report, flags=re.S)
        if match and match.group(1).strip():
            found.append(" ".join(match.group(1).split()))
    return " ".join(found) if found else " ".join(report.split())
