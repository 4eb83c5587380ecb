import csv
import os
import warnings

import numpy as np
import pytest
from datasets import Image as DatasetImage
from PIL import Image

from mrm_hf.data.classification import (
    CHEXPERT_COMPETITION_LABELS,
    NIH_LABELS,
    label_names,
    load_chexpert,
    load_covid,
    load_csv,
    load_nih,
    load_rsna,
)
from mrm_hf.data.splits import SplitListError, read_split_list


SPLITS = ("reference", "DatasetsSplits")
COVID_DATA = ("data", "covid")
NIH_DATA = ("data", "nih14")
DICOM = ("data", "dicom", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
CHEXPERT_HEADER = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly",
    "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
    "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices",
]  # the official train.csv / valid.csv header


def split_file(shared, *parts):
    return shared(*SPLITS, *parts)


def write_image(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)
    return path


def write_list(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name} {' '.join(map(str, labels))}\n" for name, labels in entries))


def quiet(function, *args, **kwargs):
    """Call a builder whose expected warnings (missing images) are not what the test is about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return function(*args, **kwargs)


def label_array(dataset, format):
    """The `labels` column as one numpy array or torch tensor, as a DataLoader would stack it."""
    return dataset.select_columns(["labels"]).with_format(format)[:]["labels"]


def positives(entries):
    return np.array([labels for _, labels in entries]).sum(axis=0).tolist()


# ---- the published split lists parse exactly -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder, name, num_labels, lines, expected_positives",
    [
        ("NIH_ChestX-ray", "train_1.txt", 14, 785, None),
        ("NIH_ChestX-ray", "train_10.txt", 14, 7847, None),
        ("NIH_ChestX-ray", "train_list.txt", 14, 78468, None),
        ("NIH_ChestX-ray", "val_list.txt", 14, 11219, None),
        ("NIH_ChestX-ray", "test_list.txt", 14, 22433, None),
        ("CheXpert", "train_1.txt", 5, 2184, None),
        ("CheXpert", "train_10.txt", 5, 21841, None),
        ("CheXpert", "val_list.txt", 5, 5000, None),
        ("CheXpert", "test_list.txt", 5, 234, [80, 68, 33, 45, 67]),
        ("RSNA_Pneumonia", "train_1.txt", 1, 251, [65]),
        ("RSNA_Pneumonia", "train_10.txt", 1, 2518, [834]),
        ("RSNA_Pneumonia", "train_list.txt", 1, 25184, [5789]),
        ("RSNA_Pneumonia", "val_list.txt", 1, 1500, [223]),
        ("RSNA_Pneumonia", "test_list.txt", 1, 3000, [1094]),
        ("COVID-19_Image_Data_Collection/covid1", "iscovid_train.txt", 1, 354, [253]),
        ("COVID-19_Image_Data_Collection/covid1", "iscovid_test.txt", 1, 104, [55]),
        ("COVID-19_Image_Data_Collection/viral1", "isviral_train.txt", 1, 296, [265]),
    ],
)
def test_published_lists_parse_to_the_published_counts(shared, folder, name, num_labels, lines, expected_positives):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-formed list parses without a single report
        entries = read_split_list(split_file(shared, *folder.split("/"), name), num_labels)
    assert len(entries) == lines
    assert all(len(labels) == num_labels and set(labels) <= {0, 1} for _, labels in entries)
    assert len({name for name, _ in entries}) == lines
    if expected_positives is not None:
        assert positives(entries) == expected_positives


def test_nih_train_val_test_partition_the_whole_dataset(shared):
    names = [
        {name for name, _ in read_split_list(split_file(shared, "NIH_ChestX-ray", f), 14)}
        for f in ("train_list.txt", "val_list.txt", "test_list.txt")
    ]
    assert sum(map(len, names)) == len(set.union(*names)) == 112_120


def test_chexpert_training_prevalences_reveal_the_published_uncertain_mapping(shared):
    entries = read_split_list(split_file(shared, "CheXpert", "train_10.txt"), 5)
    prevalence = [round(100 * p / len(entries), 1) for p in positives(entries)]
    assert prevalence == [30.3, 12.4, 6.9, 29.1, 44.5]


@pytest.mark.parametrize("index", range(1, 6))
def test_covid_split_sizes_are_in_the_published_ranges(shared, index):
    ranges = {"iscovid": (354, 356, 51, 54, 99, 104), "isviral": (296, 298, 43, 45, 85, 87)}
    for task, (train_lo, train_hi, val_lo, val_hi, test_lo, test_hi) in ranges.items():
        folder = split_file(shared, "COVID-19_Image_Data_Collection", f"{task[2:]}{index}")
        count = {s: len((folder / f"{task}_{s}.txt").read_text().split("\n")) - 1 for s in ("train", "val", "test")}
        assert train_lo <= count["train"] <= train_hi
        assert val_lo <= count["val"] <= val_hi
        assert test_lo <= count["test"] <= test_hi


def test_covid1_test_split_has_the_published_balance(shared):
    entries = read_split_list(split_file(shared, "COVID-19_Image_Data_Collection", "covid1", "iscovid_test.txt"), 1)
    assert (positives(entries)[0], len(entries) - positives(entries)[0]) == (55, 49)
    train = read_split_list(split_file(shared, "COVID-19_Image_Data_Collection", "covid1", "iscovid_train.txt"), 1)
    assert (positives(train)[0], len(train) - positives(train)[0]) == (253, 101)


def test_corrupt_first_line_of_viral1_test_is_reported_with_file_and_line(shared):
    path = split_file(shared, "COVID-19_Image_Data_Collection", "viral1", "isviral_test.txt")
    with pytest.warns(UserWarning, match=r"Skipped 1 malformed of 85 lines in .*viral1/isviral_test\.txt: line 1: "
                                         r"'gr1_lrg-a\.jpg 11' \(label '11' is not 0 or 1\)"):
        entries = read_split_list(path, 1)
    assert len(entries) == 84
    assert "gr1_lrg-a.jpg" not in {name for name, _ in entries}
    with pytest.raises(SplitListError, match=r"isviral_test\.txt, line 1: expected a usable line; found "
                                              r"'gr1_lrg-a\.jpg 11' \(label '11' is not 0 or 1\)"):
        read_split_list(path, 1, strict=True)


@pytest.mark.parametrize("index", range(2, 6))
def test_the_other_viral_test_lists_are_clean(shared, index):
    # The data README says every isviral_test.txt starts with the corrupt line; in these files only viral1 does.
    path = split_file(shared, "COVID-19_Image_Data_Collection", f"viral{index}", "isviral_test.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entries = read_split_list(path, 1)
    assert len(entries) == len(path.read_text().split("\n")) - 1


def test_malformed_lines_are_counted_and_named_never_read(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.png 0 1\r\nb.png 1\r\n\r\nc.png 0 2\r\nd.png 1 1\r\n")
    with pytest.warns(UserWarning, match=r"Skipped 2 malformed of 4 lines in .*list\.txt: line 2: 'b\.png 1' "
                                         r"\(expected a name and 2 labels, found 2 fields\); line 4: 'c\.png 0 2'"):
        entries = read_split_list(path, 2)
    assert entries == [("a.png", [0, 1]), ("d.png", [1, 1])]
    with pytest.raises(SplitListError, match=r"list\.txt, line 2: expected a name and 2 labels"):
        read_split_list(path, 2, strict=True)
    path.write_text("a.png 3\n")
    with pytest.raises(SplitListError, match=r"list\.txt: expected at least one usable line; found none of 1 candidates"):
        read_split_list(path, 1)


# ---- NIH on fake trees and on the real 64 px images ------------------------------------------------------------------


def test_nih_finds_images_in_official_and_published_layouts_and_counts_the_missing(shared, tmp_path):
    split_dir = shared(*SPLITS)
    entries = read_split_list(split_file(shared, "NIH_ChestX-ray", "train_1.txt"), 14)
    for name, _ in entries[:3]:
        write_image(tmp_path / "images_001" / "images" / name)
    for name, _ in entries[3:5]:
        write_image(tmp_path / "train" / "all_classes" / name)

    with pytest.warns(UserWarning, match=r"780 of 785 images named in .*train_1\.txt are not under .* left out"):
        data = load_nih(tmp_path, split_dir, label_fraction=1, splits=["train"])
    train = data["train"]
    assert list(data) == ["train"]
    assert train["image_path"] == [name for name, _ in entries[:5]]
    assert train["labels"] == [[float(x) for x in labels] for _, labels in entries[:5]]
    assert train[0]["image"].size == (4, 4)
    assert label_names(data) == list(NIH_LABELS)

    with pytest.raises(FileNotFoundError, match=rf"780 of 785 .*{entries[5][0]}"):
        load_nih(tmp_path, split_dir, label_fraction=1, splits=["train"], strict=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"785 of 785 .* is `data_dir` right\?"):
        load_nih(tmp_path / "empty", split_dir, label_fraction=1, splits=["train"])


def test_label_fraction_selects_the_published_list(tmp_path):
    split_dir = tmp_path / "DatasetsSplits"
    lists = {
        "train_1.txt": ["a.png"],
        "train_10.txt": ["a.png", "b.png"],
        "train_list.txt": ["a.png", "b.png", "c.png"],
        "val_list.txt": ["v.png"],
        "test_list.txt": ["t.png"],
    }
    for file, names in lists.items():
        write_list(split_dir / "NIH_ChestX-ray" / file, [(name, [0] * 14) for name in names])
        for name in names:
            write_image(tmp_path / "images" / name)
    for fraction, file in [(1, "train_1.txt"), (10, "train_10.txt"), (100, "train_list.txt")]:
        for folder in (split_dir, split_dir / "NIH_ChestX-ray"):
            data = load_nih(tmp_path / "images", folder, label_fraction=fraction)
            assert list(data) == ["train", "validation", "test"]
            assert data["train"]["image_path"] == lists[file]
            assert data["validation"]["image_path"] == ["v.png"]
            assert data["test"]["image_path"] == ["t.png"]
    with pytest.raises(ValueError, match=r"label_fraction \(percent\): expected one of 1, 10, 100; found 50"):
        load_nih(tmp_path / "images", split_dir, label_fraction=50)


@pytest.mark.parametrize("fraction, column", [(1, "in_mrm_train_1"), (10, "in_mrm_train_10")])
def test_nih_fractions_on_the_real_images_match_the_membership_columns(shared, fraction, column):
    data_dir = shared(*NIH_DATA)
    with open(data_dir / "nih14_64px_train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    expected = {os.path.basename(r["image_path"]): [float(r[c]) for c in NIH_LABELS] for r in rows if r[column] == "1"}
    train = quiet(load_nih, data_dir, shared(*SPLITS), label_fraction=fraction, splits=["train"])["train"]
    assert dict(zip(train["image_path"], train["labels"])) == expected


def test_nih_picks_the_shallowest_then_first_of_duplicate_files_and_says_so(shared):
    # Three NIH images are in the 64 px folder and, full size, in images_fullres: the pick must be deterministic.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_nih(shared(*NIH_DATA), shared(*SPLITS), label_fraction=100, splits=["train"])["train"]
    messages = [str(w.message) for w in caught]
    assert any("3 listed names match more than one file" in m for m in messages)
    paths = dict(zip(train["image_path"], train.cast_column("image", DatasetImage(decode=False))["image"]))
    assert paths["00000001_000.png"]["path"].endswith("images_64px/00000001_000.png")
    assert paths["00027426_000.png"]["path"].endswith("images_fullres/00027426_000.png")  # only there
    assert train.num_rows == 726


# ---- CheXpert --------------------------------------------------------------------------------------------------------


def test_chexpert_lists_resolve_from_the_parent_or_the_dataset_folder_without_false_matches(shared, tmp_path):
    entries = read_split_list(split_file(shared, "CheXpert", "train_1.txt"), 5)
    for name, _ in entries[:3]:
        write_image(tmp_path / name)
    # Same file name, other patient: must not stand in for a listed image that is missing.
    write_image(tmp_path / "CheXpert-v1.0-small" / "train" / "patient99999" / "study1" / "view1_frontal.jpg")
    results = []
    for data_dir in (tmp_path, tmp_path / "CheXpert-v1.0-small"):
        with pytest.warns(UserWarning, match=r"2181 of 2184 images"):
            results.append(load_chexpert(data_dir, shared(*SPLITS), label_fraction=1, splits=["train"])["train"])
    for train in results:
        assert train["image_path"] == [name for name, _ in entries[:3]]
        assert train["labels"] == [[float(x) for x in labels] for _, labels in entries[:3]]
    assert label_names(results[0]) == list(CHEXPERT_COMPETITION_LABELS)


def test_chexpert_without_the_100_percent_list_says_where_it_comes_from(shared, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_list\.txt.*ships with the published code"):
        load_chexpert(tmp_path, shared(*SPLITS), label_fraction=100)
    with pytest.raises(ValueError, match="already map uncertain labels"):
        load_chexpert(tmp_path, shared(*SPLITS), uncertain_policy="ones")


def write_chexpert_csvs(root, train_rows, valid_rows, drop=()):
    folder = root / "CheXpert-v1.0-small"
    header = [c for c in CHEXPERT_HEADER if c not in drop]
    for name, rows, split in (("train.csv", train_rows, "train"), ("valid.csv", valid_rows, "valid")):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / name, "w", newline="") as file:
            writer = csv.DictWriter(file, header, extrasaction="ignore")
            writer.writeheader()
            for number, labels in enumerate(rows):
                path = f"CheXpert-v1.0-small/{split}/patient{number:05d}/study1/view1_frontal.jpg"
                write_image(root / path)
                writer.writerow({"Path": path, "Sex": "Female", "Age": "60", "Frontal/Lateral": "Frontal",
                                 "AP/PA": "AP", "No Finding": "", **dict(zip(CHEXPERT_COMPETITION_LABELS, labels))})


def test_chexpert_csvs_map_uncertain_labels_by_policy_and_blanks_to_zero(tmp_path):
    uncertain = ["-1.0"] * 5
    mixed = ["1.0", "", "0.0", "1.0", ""]
    write_chexpert_csvs(tmp_path, [uncertain, mixed], [["1.0", "0.0", "0.0", "0.0", "1.0"]])
    expected = {
        "published": [1.0, 0.0, 0.0, 1.0, 1.0],  # U-ones for Atelectasis, Edema, Effusion; U-zeros for the others
        "ones": [1.0] * 5,
        "zeros": [0.0] * 5,
    }
    for policy, labels in expected.items():
        data = load_chexpert(tmp_path, uncertain_policy=policy)
        assert list(data) == ["train", "test"]
        assert data["train"]["labels"] == [labels, [1.0, 0.0, 0.0, 1.0, 0.0]]
        assert data["test"]["labels"] == [[1.0, 0.0, 0.0, 0.0, 1.0]]
    assert load_chexpert(tmp_path / "CheXpert-v1.0-small")["train"].num_rows == 2
    with pytest.raises(ValueError, match=r"uncertain_policy: expected one of 'published', 'ones', 'zeros'; found 'ign"):
        load_chexpert(tmp_path, uncertain_policy="ignore")
    with pytest.raises(ValueError, match="published 1% and 10% subsets need `split_dir`"):
        load_chexpert(tmp_path, label_fraction=10)


def test_chexpert_csv_bad_values_and_missing_columns_are_named(tmp_path):
    write_chexpert_csvs(tmp_path, [["1.0"] * 5, ["1.0", "1.0", "1.0", "2.0", "1.0"]], [["0.0"] * 5])
    with pytest.warns(UserWarning, match=r"Skipped 1 malformed of 2 lines in .*train\.csv: line 3: .*Edema is '2\.0'"):
        assert load_chexpert(tmp_path)["train"].num_rows == 1
    with pytest.raises(SplitListError, match=r"train\.csv, line 3: expected a usable line; found .*\(Edema is '2\.0'"):
        load_chexpert(tmp_path, strict=True)
    write_chexpert_csvs(tmp_path / "other", [["1.0"] * 5], [["0.0"] * 5], drop=("Edema",))
    with pytest.raises(ValueError, match=r"found \['Path', 'Sex'.*, without \['Edema'\]"):
        load_chexpert(tmp_path / "other")


# ---- RSNA ------------------------------------------------------------------------------------------------------------


def test_rsna_lists_give_dicom_paths_the_image_processor_reads(shared, tmp_path):
    pytest.importorskip("pydicom")
    from mrm_hf.image_processing_mrm import load_radiograph

    entries = read_split_list(split_file(shared, "RSNA_Pneumonia", "train_1.txt"), 1)
    for name, _ in entries[:2]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(shared(*DICOM), tmp_path / name)  # a real DICOM under the RSNA name, not copied
    with pytest.warns(UserWarning, match=r"249 of 251 images named in .*RSNA_Pneumonia/train_1\.txt"):
        train = load_rsna(tmp_path, shared(*SPLITS), label_fraction=1, splits=["train"])["train"]
    assert train.features["image"].decode is False  # PIL cannot open DICOM; the processor can
    assert train["labels"] == [[float(labels[0])] for _, labels in entries[:2]]
    row = train[0]
    assert row["image"]["path"].endswith(entries[0][0])
    assert load_radiograph(row["image"]).size == (1024, 1024)
    assert label_names(train) == ["Pneumonia"]


def test_rsna_labels_csv_gives_one_label_per_patient(tmp_path):
    rows = ["patientId,x,y,width,height,Target", "p1,,,,,0", "p2,1,2,3,4,1", "p2,5,6,7,8,1", "p3,1,1,1,1,1",
            "p3,,,,,0"]
    (tmp_path / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    for patient in ("p1", "p2", "p3"):
        (tmp_path / "stage_2_train_images").mkdir(exist_ok=True)
        (tmp_path / "stage_2_train_images" / f"{patient}.dcm").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"line 6: 'p3,0' \(Target differs from the patient's earlier Target 1\)"):
        data = load_rsna(tmp_path)
    assert list(data) == ["train"]
    assert data["train"]["image_path"] == [f"stage_2_train_images/{p}.dcm" for p in ("p1", "p2", "p3")]
    assert data["train"]["labels"] == [[0.0], [1.0], [1.0]]
    with pytest.raises(ValueError, match="published 1% and 10% subsets need `split_dir`"):
        load_rsna(tmp_path, label_fraction=1)


# ---- COVID -----------------------------------------------------------------------------------------------------------


def test_covid_split_1_on_the_real_images_matches_the_shipped_csvs(shared):
    data_dir = shared(*COVID_DATA)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_covid(data_dir, shared(*SPLITS), task="covid", split_index=1, splits=["train", "validation"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "40 of 354 images named in" in messages[0] and "covid1/iscovid_train.txt" in messages[0]
    assert "5 of 51 images named in" in messages[1] and "covid1/iscovid_val.txt" in messages[1]
    for split, file in (("train", "covid1_train.csv"), ("validation", "covid1_val.csv")):
        with open(data_dir / file, newline="") as handle:
            expected = {os.path.basename(r["image_path"]): [float(r["label"])] for r in csv.DictReader(handle)}
        assert dict(zip(data[split]["image_path"], data[split]["labels"])) == expected
    assert label_names(data) == ["COVID-19"]
    # The shared copy holds the test images back.
    with pytest.raises(FileNotFoundError, match=r"104 of 104 .*covid1/iscovid_test\.txt"):
        load_covid(data_dir, shared(*SPLITS), splits=["test"])


def test_viral_builder_reports_the_corrupt_line_and_the_missing_images(shared, tmp_path):
    path = split_file(shared, "COVID-19_Image_Data_Collection", "viral1", "isviral_test.txt")
    entries = quiet(read_split_list, path, 1)
    for name, _ in entries[:4]:
        write_image(tmp_path / "images" / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test = load_covid(tmp_path, shared(*SPLITS), task="viral", split_index=1, splits=["test"])["test"]
    messages = [str(w.message) for w in caught]
    assert any("isviral_test.txt: line 1: 'gr1_lrg-a.jpg 11'" in m for m in messages)
    assert any("80 of 84 images named in" in m for m in messages)
    assert test["image_path"] == [name for name, _ in entries[:4]]
    assert label_names(test) == ["viral"]
    with pytest.raises(ValueError, match="task: expected one of 'covid', 'viral'; found 'bacterial'"):
        load_covid(tmp_path, shared(*SPLITS), task="bacterial")
    with pytest.raises(ValueError, match="split_index: expected one of 1, 2, 3, 4, 5; found 6"):
        load_covid(tmp_path, shared(*SPLITS), split_index=6)


# ---- any CSV ---------------------------------------------------------------------------------------------------------


def test_load_csv_reads_covid_split_1_as_one_binary_output(shared):
    folder = shared(*COVID_DATA)
    data = load_csv(folder / "covid1_train.csv", folder / "covid1_val.csv", label_columns=["label"])
    assert list(data) == ["train", "validation"]
    labels = {split: label_array(data[split], "numpy") for split in data}
    assert labels["train"].shape == (314, 1) and labels["train"].dtype == np.float32
    assert labels["validation"].shape == (46, 1)
    assert (labels["train"].sum(), labels["validation"].sum()) == (248, 30)
    assert data["train"][0]["image"].mode == "L"
    assert data["train"][0]["image_path"].startswith("images/")


def test_load_csv_reads_nih_64px_as_14_labels(shared):
    folder = shared(*NIH_DATA)
    data = load_csv(folder / "nih14_64px_train.csv", folder / "nih14_64px_val.csv", label_columns=NIH_LABELS,
                    num_labels=14)
    train = label_array(data["train"], "torch")
    validation = label_array(data["validation"], "numpy")
    assert tuple(train.shape) == (725, 14) and str(train.dtype) == "torch.float32"
    assert train.sum(0).long().tolist() == [62, 57, 99, 110, 28, 26, 4, 32, 30, 22, 29, 18, 18, 9]
    assert validation.shape == (94, 14)
    assert validation.sum(0).astype(int).tolist() == [9, 2, 23, 15, 3, 3, 2, 7, 2, 3, 6, 2, 2, 0]
    assert data["train"][0]["image"].size == (64, 64)
    assert label_names(data) == list(NIH_LABELS)


def test_load_csv_single_label_gives_named_class_ids(shared):
    folder = shared(*COVID_DATA)
    data = load_csv(folder / "covid1_train.csv", label_columns="label", problem_type="single_label_classification",
                    class_names=["other", "COVID-19"])
    assert data["train"].features["labels"].names == ["other", "COVID-19"]
    assert sum(data["train"]["labels"]) == 248
    assert label_names(data) == ["other", "COVID-19"]
    with pytest.raises(ValueError, match=r"one integer class column; found 14 label columns"):
        load_csv(shared(*NIH_DATA) / "nih14_64px_train.csv", label_columns=NIH_LABELS,
                 problem_type="single_label_classification")


def test_load_csv_label_column_errors_say_what_was_expected_and_found(shared):
    path = shared(*NIH_DATA) / "nih14_64px_train.csv"
    with pytest.raises(ValueError, match=r"found \['image_path', 'Atelectasis'.*, without "
                                         r"\['Pneumonia ', 'Lung Opacity'\]"):
        load_csv(path, label_columns=["Atelectasis", "Pneumonia ", "Lung Opacity"])
    with pytest.raises(ValueError, match=r"expected 13 label columns \(num_labels\); found 14"):
        load_csv(path, label_columns=NIH_LABELS, num_labels=13)
    # Every column but the image one, metadata included: the error names them and says how to pick the labels.
    with pytest.raises(ValueError, match=r"finding_labels_dataentry_v2020 \('No Finding' on line 2\).*view \('PA'") as error:
        load_csv(path)
    assert "--label_columns Atelectasis,Cardiomegaly," in str(error.value)
    assert "age" in str(error.value) and "sex" in str(error.value)


def test_load_csv_missing_images_and_bad_labels_are_reported(tmp_path):
    write_image(tmp_path / "img" / "a.png")
    write_image(tmp_path / "img" / "c.png")
    (tmp_path / "train.csv").write_text("file,x,y\nimg/a.png,1,0\nimg/b.png,0,1\nimg/c.png,1,-1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_csv(tmp_path / "train.csv", image_column="file", label_columns=["x", "y"])["train"]
    messages = [str(w.message) for w in caught]
    assert any("line 4: 'img/c.png,1,-1' (y is '-1', not 0 or 1)" in m for m in messages)
    assert any("1 of 2 images named in" in m and "img/b.png" in m for m in messages)
    assert train["image_path"] == ["img/a.png"] and train["labels"] == [[1.0, 0.0]]
    with pytest.raises(FileNotFoundError, match=r"1 of 3 images named in .*train\.csv .*img/b\.png"):
        load_csv(tmp_path / "train.csv", image_column="file", label_columns=["x"], strict=True)
    nested = tmp_path / "csvs"
    nested.mkdir()
    (nested / "train.csv").write_text("file,x\nimg/a.png,1\n")
    assert load_csv(nested / "train.csv", image_column="file", image_root=tmp_path)["train"].num_rows == 1


def test_label_names_survive_save_and_load(shared, tmp_path):
    from datasets import load_from_disk

    folder = shared(*COVID_DATA)
    data = load_csv(folder / "covid1_val.csv", label_columns=["label"])
    data.save_to_disk(str(tmp_path / "saved"))
    assert label_names(load_from_disk(str(tmp_path / "saved"))) == ["label"]
