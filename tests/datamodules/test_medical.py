"""The medical loaders on files the tests write (MedMNIST .npz) and on the DICOM and NIfTI files that ship
inside pydicom and nibabel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastlab.datamodules.medical import GREY_VIEWS, VOLUME_VIEWS, MedicalStudies, MedMNIST, save_medmnist
from contrastlab.datamodules.studies import ct_window, mr_zscore, read_dicom_series, read_nifti
from contrastlab.errors import ConfigError, DataError
from tests.conftest import SHARED_DATA
from tests.medical import SPLITS, copy_file, nibabel_file, pydicom_file, write_ct_series, write_medmnist

# -- MedMNIST ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_shape", ["column", "flat"])
def test_medmnist_2d_reads_both_label_shapes_and_the_official_splits(tmp_path, label_shape):
    write_medmnist(tmp_path / "breastmnist.npz", label_shape=label_shape)
    data = MedMNIST("breastmnist", root=str(tmp_path))
    info = data.info
    assert info.shape == (1, 28, 28) and info.modality == "image" and info.num_classes == 2
    assert not info.multilabel and info.extra["task"] == "binary-class" and info.views == GREY_VIEWS
    for split, n in SPLITS.items():
        dataset = data.split(split)
        assert len(dataset) == n
    sample = data.split("train")[3]
    assert sample["x"].dtype == torch.uint8 and sample["x"].shape == (1, 28, 28) and sample["y"] == 1


def test_medmnist_sizes_colour_and_3d_sets(tmp_path):
    rng = np.random.default_rng(0)
    rgb = {s: (rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), rng.integers(0, 9, (4, 1))) for s in SPLITS}
    save_medmnist(tmp_path / "pathmnist_64.npz", rgb)
    info = MedMNIST("pathmnist", root=str(tmp_path), size=64).info
    assert info.shape == (3, 64, 64) and info.num_classes == 9 and info.views.endswith("vision.ImageViews")
    x = MedMNIST(path=str(tmp_path / "pathmnist_64.npz")).split("test")[0]["x"]
    assert x.shape == (3, 64, 64) and torch.equal(x, torch.from_numpy(rgb["test"][0][0]).permute(2, 0, 1))

    write_medmnist(tmp_path / "organmnist3d.npz", dims=3, size=16)
    data = MedMNIST("organmnist3d", root=str(tmp_path))
    assert data.info.shape == (1, 16, 16, 16) and data.info.modality == "volume" and data.info.views == VOLUME_VIEWS
    assert data.info.num_classes == 11 and data.split("val")[0]["x"].shape == (1, 16, 16, 16)


def test_medmnist_multilabel_sets_keep_multi_hot_labels(tmp_path):
    write_medmnist(tmp_path / "chestmnist.npz", multilabel=14)
    data = MedMNIST("chestmnist", root=str(tmp_path))
    assert data.info.multilabel and data.info.num_classes == 14
    assert data.info.extra["task"] == "multi-label, binary-class"
    y = data.split("train")[0]["y"]
    assert y.shape == (14,) and y.dtype == torch.long


def test_a_missing_medmnist_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as err:
        _ = MedMNIST("dermamnist", root=str(tmp_path), size=128).info
    message = str(err.value)
    assert str(tmp_path / "dermamnist_128.npz") in message and "download" in message and "\n" not in message


@pytest.mark.skipif(not (SHARED_DATA / "medmnist" / "breastmnist.npz").is_file(), reason="BreastMNIST not here")
def test_the_real_breastmnist_file():
    data = MedMNIST("breastmnist", root=str(SHARED_DATA / "medmnist"))
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [546, 78, 156]
    assert data.info.shape == (1, 28, 28) and set(data.split("train").y.tolist()) == {0, 1}


# -- DICOM -------------------------------------------------------------------------------------------------


def test_dicom_slices_apply_rescale_slope_and_intercept():
    import pydicom

    ct = read_dicom_series([pydicom_file("CT_small.dcm")])
    raw = pydicom.dcmread(pydicom_file("CT_small.dcm")).pixel_array
    assert ct.voxels.shape == (1, 128, 128) and ct.modality == "CT"
    assert torch.equal(ct.voxels[0], torch.from_numpy(raw.astype(np.float32) - 1024))  # slope 1, intercept -1024
    mr = read_dicom_series([pydicom_file("MR_small.dcm")])  # no rescale tags: stored values
    assert mr.voxels.shape == (1, 64, 64) and mr.spacing[1:] == (0.3125, 0.3125)


def test_a_dicom_series_is_sorted_by_slice_position(tmp_path):
    import pydicom

    folder = write_ct_series(tmp_path / "series", slices=4, spacing=5.0)
    volume = read_dicom_series(folder)
    base = pydicom.dcmread(pydicom_file("CT_small.dcm")).pixel_array.astype(np.float32) - 1024
    assert volume.voxels.shape == (4, 128, 128)
    for k in range(4):
        assert torch.equal(volume.voxels[k], torch.from_numpy(base + 100 * k)), k
    assert volume.spacing == pytest.approx((5.0, 0.661468, 0.661468))


@pytest.mark.parametrize(
    "intruder, says",
    [
        ("MR_small.dcm", "another series"),
        ("MR_truncated.dcm", "MR_truncated.dcm"),
        ("rtplan.dcm", "no PixelData"),
        ("notes.dcm", "not a DICOM file"),
    ],
)
def test_corrupt_foreign_or_non_image_files_are_named(tmp_path, intruder, says):
    folder = write_ct_series(tmp_path / "series", slices=2)
    if intruder == "notes.dcm":
        (folder / intruder).write_text("not an image\n")
    else:
        copy_file(pydicom_file(intruder), folder / intruder)
    with pytest.raises(DataError) as err:
        read_dicom_series(folder)
    message = str(err.value)
    assert str(folder / intruder) in message and says in message and "\n" not in message


def test_ct_windows_and_mr_zscores():
    hu = torch.tensor([-2000.0, -1350.0, -600.0, 150.0, 3000.0])
    assert torch.allclose(ct_window(hu, "lung"), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert torch.allclose(ct_window(torch.tensor([40.0]), "brain"), torch.tensor([0.5]))
    mr = torch.cat([torch.zeros(100), torch.rand(400) * 500 + 100])
    z = mr_zscore(mr)
    assert torch.all(z[:100] == 0)
    assert z[100:].mean().abs() < 1e-4 and (z[100:].std() - 1).abs() < 1e-4


# -- NIfTI -------------------------------------------------------------------------------------------------


def test_nifti_is_reoriented_to_canonical_axes(tmp_path):
    import nibabel as nib

    path = nibabel_file("anatomical.nii")
    original = nib.load(path)
    volume = read_nifti(path)
    canonical = np.asarray(nib.as_closest_canonical(original).dataobj, dtype=np.float32)
    assert volume.voxels.shape == canonical.shape[::-1] and volume.spacing == (2.0, 2.0, 2.0)
    assert torch.equal(volume.voxels, torch.from_numpy(canonical.transpose(2, 1, 0).copy()))
    # The same anatomy stored with its first axis reversed (the affine says so) reads the same.
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = original.shape[0] - 1
    mirrored = nib.Nifti1Image(np.asarray(original.dataobj)[::-1].copy(), original.affine @ flip)
    assert nib.aff2axcodes(mirrored.affine) != nib.aff2axcodes(original.affine)
    nib.save(mirrored, tmp_path / "mirrored.nii.gz")
    assert torch.equal(read_nifti(tmp_path / "mirrored.nii.gz").voxels, volume.voxels)


def test_nifti_is_resampled_to_a_target_spacing_and_4d_gives_a_frame():
    import nibabel as nib
    from nibabel.processing import resample_to_output

    path = nibabel_file("anatomical.nii")
    volume = read_nifti(path, spacing=(4.0, 4.0, 4.0))
    expected = resample_to_output(nib.as_closest_canonical(nib.load(path)), voxel_sizes=(4.0, 4.0, 4.0), order=1)
    assert volume.spacing == (4.0, 4.0, 4.0) and volume.voxels.shape == expected.shape[::-1]
    assert volume.voxels.shape[0] < 25 / 2 + 2  # about half the slices
    frames = read_nifti(nibabel_file("example4d.nii.gz"), frame=1)
    assert frames.voxels.shape == (24, 96, 128)


# -- a folder of studies -----------------------------------------------------------------------------


def write_studies(root, patients: int = 6, per_patient: int = 2, size: int = 12):
    """NIfTI studies, two per patient, with a labels CSV (path, label, patient), no split column."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    rows = ["path,label,patient"]
    for p in range(patients):
        for s in range(per_patient):
            data = rng.normal(100, 10, (size, size, size)).astype(np.float32)
            name = f"p{p}_s{s}.nii.gz"
            nib.save(nib.Nifti1Image(data, np.eye(4)), root / name)
            rows.append(f"{name},{'benign' if p % 2 else 'malignant'},patient{p}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_studies_expose_groups_and_split_by_patient(tmp_path):
    write_studies(tmp_path)
    write_ct_series(tmp_path / "ct_series", slices=3)
    with open(tmp_path / "labels.csv", "a") as handle:
        handle.write("ct_series,benign,\n")  # a DICOM series, its patient unknown
    data = MedicalStudies(str(tmp_path), group_column="patient", shape=(8, 16, 16), intensity="minmax")
    info = data.info
    assert info.shape == (1, 8, 16, 16) and info.num_classes == 2 and info.views == VOLUME_VIEWS
    seen: dict[int, str] = {}
    for split in ("train", "val", "test"):
        dataset = data.split(split)
        for i in range(len(dataset)):
            sample = dataset[i]
            assert (
                sample["x"].shape == (1, 8, 16, 16) and 0 <= float(sample["x"].min()) <= float(sample["x"].max()) <= 1
            )
            if sample["group"] >= 0:
                assert seen.setdefault(sample["group"], split) == split  # one patient, one split
            else:
                assert dataset.paths[i].name == "ct_series"
    assert sorted(seen) == list(range(6)) and data.group_names()[0] == "patient0"


def test_a_study_that_cannot_be_read_is_named(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    (tmp_path / "labels.csv").write_text("path,label,split\nbroken.nii.gz,0,train\n")
    data = MedicalStudies(str(tmp_path), shape=(4, 4, 4))
    with pytest.raises(DataError, match="broken.nii.gz"):
        data.split("train")[0]
    with pytest.raises(ConfigError, match="data.group_column: 'subject' is not a column of"):
        _ = MedicalStudies(str(tmp_path), group_column="subject").info


def test_a_file_without_a_split_or_not_an_npz_is_named(tmp_path):
    write_medmnist(tmp_path / "pneumoniamnist.npz")
    with np.load(tmp_path / "pneumoniamnist.npz") as data:
        arrays = {k: data[k] for k in data.files if not k.startswith("val")}
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    with pytest.raises(DataError, match="holds no 'val_images' array"):
        MedMNIST("pneumoniamnist", root=str(tmp_path)).split("val")
    (tmp_path / "octmnist.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        _ = MedMNIST("octmnist", root=str(tmp_path)).info
