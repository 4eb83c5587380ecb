import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import run_without_mrm_hf
from PIL import Image

from mrm_hf.image_processing_mrm import MRM_MEAN, MRM_STD, MRMImageProcessor, load_radiograph, to_grayscale
from mrm_hf.transforms import FineTuningTransform, PretrainingTransform, RandomResizedCrop


COVID_IMAGE = ("data", "covid", "images", "000001-1.png")  # 8-bit grayscale, 423 x 512 (H x W)
MONOCHROME1 = ("data", "dicom", "RG1_J2KI.dcm")
MONOCHROME2 = ("data", "dicom", "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
GRAY_LEVEL = 1 / 255 / MRM_STD  # one 8-bit gray level in normalised units


@pytest.fixture(scope="module")
def processor():
    return MRMImageProcessor()


@pytest.fixture
def radiograph(shared):
    return np.asarray(Image.open(shared(*COVID_IMAGE)))


@pytest.fixture(scope="module")
def synthetic():
    """A non-square 8-bit image for the tests that need no real radiograph."""
    return np.random.default_rng(2).integers(0, 256, (300, 260), dtype=np.uint8)


def pixel_values(processor, images, **kwargs):
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"]


def pil_bilinear_matrix(in_size, out_size):
    """PIL's antialiased bilinear resampling along one axis, as an (out, in) matrix."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        low = max(int(center - filterscale + 0.5), 0)
        high = min(int(center + filterscale + 0.5), in_size)
        taps = np.arange(low, high)
        weights = np.clip(1 - np.abs((taps - center + 0.5) / filterscale), 0, None)
        matrix[i, low:high] = weights / weights.sum()
    return matrix


def spine_minus_lungs(gray):
    """Mean of the central strip (spine, mediastinum) minus the brighter of the two lateral lung windows."""
    height, width = gray.shape
    rows = slice(int(0.3 * height), int(0.6 * height))
    spine = gray[rows, int(0.45 * width) : int(0.55 * width)].mean()
    right_lung = gray[rows, int(0.2 * width) : int(0.35 * width)].mean()
    left_lung = gray[rows, int(0.65 * width) : int(0.8 * width)].mean()
    return spine - max(right_lung, left_lung)


# Inputs: bit depths, colour modes, arrays and tensors


def test_bit_depths_and_file_formats_give_the_same_pixel_values(processor, radiograph, tmp_path):
    Image.fromarray(radiograph).save(tmp_path / "gray8.png")
    Image.fromarray(radiograph.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    Image.fromarray(radiograph).convert("RGB").save(tmp_path / "rgb.jpg", quality=95)
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"

    expected = pixel_values(processor, str(tmp_path / "gray8.png"))
    assert torch.equal(pixel_values(processor, tmp_path / "gray16.png"), expected)

    # Bilinear weights are non-negative, so the output moves by at most the JPEG's largest error on the pixels.
    jpeg_gray = np.asarray(Image.open(tmp_path / "rgb.jpg").convert("L")).astype(np.float64)
    jpeg_error = np.abs(jpeg_gray - radiograph).max() / 255 / MRM_STD
    difference = (pixel_values(processor, tmp_path / "rgb.jpg") - expected).abs().max().item()
    assert 0 < difference <= jpeg_error + 1e-5
    assert jpeg_error < 10 * GRAY_LEVEL


def test_arrays_tensors_and_pil_modes_match_the_8bit_image(processor, radiograph):
    expected = pixel_values(processor, Image.fromarray(radiograph))
    rgba = np.dstack([radiograph] * 3 + [np.full_like(radiograph, 77)])
    same_image = {
        "uint8 (H, W)": radiograph,
        "uint8 (H, W, 1)": radiograph[..., None],
        "uint8 (H, W, 3)": np.dstack([radiograph] * 3),
        "uint16 x257": radiograph.astype(np.uint16) * 257,
        "float32 /255": radiograph.astype(np.float32) / 255,
        "tensor (H, W)": torch.from_numpy(radiograph.copy()),
        "tensor (3, H, W)": torch.from_numpy(np.stack([radiograph] * 3)),
        "tensor float (1, H, W)": torch.from_numpy(radiograph[None].astype(np.float32) / 255),
        "RGB": Image.fromarray(radiograph).convert("RGB"),
        "RGBA, alpha dropped": Image.fromarray(rgba),
        "LA, alpha dropped": Image.fromarray(rgba[..., [0, 3]]),
        "P": Image.fromarray(radiograph).convert("P"),
        "I;16": Image.fromarray(radiograph.astype(np.uint16) * 257),
        "I": Image.fromarray(radiograph.astype(np.int32) * 257),
        "F": Image.fromarray(radiograph.astype(np.float32) / 255),
    }
    for name, image in same_image.items():
        assert torch.equal(pixel_values(processor, image), expected), name


def test_sixteen_bit_values_keep_their_full_range_and_precision():
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    gray = to_grayscale(Image.fromarray(ramp))
    assert gray.max() == 1.0 and gray.min() == 0.0
    assert len(np.unique(gray)) == len(np.unique(ramp)) > 256  # not squeezed through 8 bits


def test_colour_becomes_pil_luminance():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    expected = np.asarray(Image.fromarray(rgb).convert("L"))[0, 0] / 255
    assert to_grayscale(rgb)[0, 0] == pytest.approx(expected, abs=1e-7)
    deep = rgb.astype(np.float32) / 255
    assert to_grayscale(deep)[0, 0] == pytest.approx((0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, abs=1e-6)


def test_a_batch_comes_back_in_order(processor, radiograph):
    flipped = radiograph[:, ::-1].copy()
    batch = pixel_values(processor, [radiograph, flipped])
    assert batch.shape == (2, 3, 224, 224)
    assert torch.equal(batch[1], pixel_values(processor, flipped)[0])
    assert not torch.equal(batch[0], batch[1])


# load_radiograph


def test_load_radiograph_keeps_8bit_as_L_and_deeper_as_I16(radiograph, tmp_path, shared, processor):
    assert load_radiograph(Image.fromarray(radiograph).convert("RGB")).mode == "L"
    assert np.array_equal(np.asarray(load_radiograph(radiograph)), radiograph)
    deep = load_radiograph(radiograph.astype(np.uint16) * 257)
    assert deep.mode == "I;16" and np.array_equal(np.asarray(deep), radiograph.astype(np.uint16) * 257)

    path = shared(*MONOCHROME2)
    loaded = load_radiograph(path)
    assert loaded.mode == "I;16"
    assert torch.equal(pixel_values(processor, path), pixel_values(processor, loaded))
    with open(path, "rb") as file:
        data = file.read()
    assert np.array_equal(np.asarray(load_radiograph({"bytes": data, "path": None})), np.asarray(loaded))
    (tmp_path / "no_suffix").write_bytes(data)  # found by its DICM magic
    assert np.array_equal(np.asarray(load_radiograph(tmp_path / "no_suffix")), np.asarray(loaded))


# DICOM


def test_monochrome1_dicom_is_inverted_so_bone_is_bright(shared, processor):
    # A frontal chest film shows the spine and mediastinum brighter than the air-filled lungs on either side; the
    # raw MONOCHROME1 values are the other way round, so skipping the inversion flips the sign of this difference.
    path = shared(*MONOCHROME1)
    pydicom = pytest.importorskip("pydicom")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert spine_minus_lungs(raw / raw.max()) < -0.1

    assert spine_minus_lungs(np.asarray(load_radiograph(path)) / 65535) > 0.1
    assert spine_minus_lungs(pixel_values(processor, path)[0, 0].numpy()) > 0.1 / MRM_STD


def test_monochrome2_dicom_is_not_inverted(shared):
    path = shared(*MONOCHROME2)
    pydicom = pytest.importorskip("pydicom")
    raw = pydicom.dcmread(path).pixel_array  # 8-bit, no window: the pixel range 0..255 is the scale
    assert raw.min() == 0 and raw.max() == 255
    loaded = np.asarray(load_radiograph(path))
    assert np.array_equal(loaded, raw.astype(np.uint16) * 257)
    assert spine_minus_lungs(loaded / 65535) > 0.1


def test_dicom_window_follows_the_standard_linear_function(shared):
    path = shared(*MONOCHROME1)
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(path)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    raw = ds.pixel_array.astype(np.float64)
    # DICOM PS3.3 C.11.2.1.2.1, to [0, 1], then MONOCHROME1 inverted.
    expected = 1 - np.clip((raw - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    loaded = np.asarray(load_radiograph(path)) / 65535
    assert np.abs(loaded - expected).max() <= 1 / 65535  # one 16-bit level


def test_dicom_without_pydicom_says_how_to_install_it(shared, monkeypatch):
    path = shared(*MONOCHROME2)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"pip install mrm-hf\[dicom\]"):
        load_radiograph(path)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_truncated_dicom_raises_naming_the_file(shared, tmp_path):
    pytest.importorskip("pydicom")
    data = shared(*MONOCHROME1).read_bytes()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="broken.dcm"):
        load_radiograph(broken)


# Geometry: the two modes


def test_evaluation_mode_is_the_published_resize_and_center_crop():
    # 303 x 250: the short side goes to 224 and the long one to int(224 * 303 / 250) = 271. The crop offset is
    # round(47 / 2) = 24 as in torchvision (a floor would give 23).
    image = np.random.default_rng(0).integers(0, 256, (303, 250), dtype=np.uint8)
    resized = pil_bilinear_matrix(303, 271) @ (image / 255) @ pil_bilinear_matrix(250, 224).T
    expected = (resized[24 : 24 + 224, :] - MRM_MEAN) / MRM_STD

    output = pixel_values(MRMImageProcessor(), image)[0].numpy()
    assert output.shape == (3, 224, 224)
    for channel in output:
        np.testing.assert_allclose(channel, expected, atol=1e-4)


def test_evaluation_mode_matches_the_published_torchvision_pipeline(processor, radiograph):
    transforms = pytest.importorskip("torchvision.transforms")
    published = transforms.Compose([
        transforms.Resize(224),
        transforms.CenterCrop(224),
        transforms.Grayscale(3),
        transforms.ToTensor(),
        transforms.Normalize([MRM_MEAN] * 3, [MRM_STD] * 3),
    ])
    for image in (radiograph, radiograph.T.copy()):  # landscape and portrait
        ours = pixel_values(processor, image)[0]
        assert ours.shape == (3, 224, 224)
        reference = published(Image.fromarray(image).convert("RGB"))
        # PIL's 8-bit resize rounds after each of its two passes: at most one gray level apart.
        assert (ours - reference).abs().max().item() <= GRAY_LEVEL + 1e-6


def test_pretraining_mode_resizes_to_448_square_bicubic(radiograph):
    transforms = pytest.importorskip("torchvision.transforms")
    pretraining = MRMImageProcessor(mode="pretraining")
    ours = pixel_values(pretraining, radiograph)
    assert ours.shape == (1, 3, 448, 448)
    assert torch.equal(pixel_values(MRMImageProcessor(), radiograph, mode="pretraining"), ours)

    resize = transforms.Resize((448, 448), interpolation=transforms.InterpolationMode.BICUBIC)
    reference = (transforms.functional.to_tensor(resize(Image.fromarray(radiograph))) - MRM_MEAN) / MRM_STD
    # Bicubic's negative lobes let the 8-bit rounding of its two passes add up to a little over one gray level.
    assert (ours[0, 0] - reference[0]).abs().max().item() <= 1.5 * GRAY_LEVEL


def test_sizes_are_configurable(radiograph):
    small = MRMImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 48, "width": 32})
    assert pixel_values(small, radiograph).shape == (1, 3, 48, 32)
    square = MRMImageProcessor(mode="pretraining", size={"height": 96, "width": 80})
    assert pixel_values(square, radiograph).shape == (1, 3, 96, 80)


def test_normalisation_uses_the_published_statistics(processor):
    mean_gray = np.full((50, 70), MRM_MEAN, dtype=np.float32)
    assert pixel_values(processor, mean_gray).abs().max().item() < 1e-6
    white = pixel_values(processor, np.full((50, 70), 255, dtype=np.uint8))
    assert torch.allclose(white, torch.full_like(white, (1 - MRM_MEAN) / MRM_STD))


def test_a_constant_black_image_is_not_an_error(processor):
    black = pixel_values(processor, np.zeros((300, 200), np.uint8))
    assert torch.allclose(black, torch.full_like(black, -MRM_MEAN / MRM_STD))


# Saving and loading


def test_save_and_auto_load_round_trip(tmp_path, synthetic):
    from transformers import AutoImageProcessor

    from mrm_hf.configuration_mrm import MRMConfig

    AutoImageProcessor.register(MRMConfig, image_processor_classes={"pil": MRMImageProcessor}, exist_ok=True)
    for original in (MRMImageProcessor(), MRMImageProcessor(mode="pretraining", size={"height": 320, "width": 320})):
        original.save_pretrained(tmp_path / original.mode)
        saved = json.loads((tmp_path / original.mode / "preprocessor_config.json").read_text())
        assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_mrm.MRMImageProcessor"}
        assert saved["mode"] == original.mode and saved["image_mean"] == [MRM_MEAN] * 3
        assert (tmp_path / original.mode / "image_processing_mrm.py").exists()

        loaded = AutoImageProcessor.from_pretrained(tmp_path / original.mode)
        assert type(loaded) is MRMImageProcessor
        assert loaded.to_dict() == original.to_dict()
        assert torch.equal(pixel_values(loaded, synthetic), pixel_values(original, synthetic))


def test_trust_remote_code_loads_without_mrm_hf(tmp_path, processor):
    image = np.random.default_rng(1).integers(0, 65536, (90, 120), dtype=np.uint16)
    np.save(tmp_path / "image.npy", image)
    processor.save_pretrained(tmp_path / "saved")
    run_without_mrm_hf(
        textwrap.dedent(
            """
            import numpy as np
            from transformers import AutoImageProcessor

            loaded = AutoImageProcessor.from_pretrained("saved", trust_remote_code=True)
            assert type(loaded).__name__ == "MRMImageProcessor", type(loaded)
            assert not type(loaded).__module__.startswith("mrm_hf"), type(loaded).__module__
            output = loaded(np.load("image.npy"), return_tensors="pt")["pixel_values"]
            np.save("output.npy", output.numpy())
            """
        ),
        tmp_path,
    )
    assert np.array_equal(np.load(tmp_path / "output.npy"), pixel_values(processor, image).numpy())


# Bad input


def test_truncated_files_raise_naming_the_file(radiograph, tmp_path, processor):
    for name in ("cut.png", "cut.jpg"):
        Image.fromarray(radiograph).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(OSError, match=name):
            processor(str(tmp_path / name))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(OSError, match="notes.png"):
        load_radiograph(tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_radiograph(tmp_path / "missing.png")


def test_bad_arrays_and_modes_raise_with_what_was_found(processor):
    cases = [
        (np.zeros((0, 10), np.uint8), r"non-empty.*\(0, 10\)"),
        (Image.new("L", (0, 0)), r"non-empty"),
        (np.zeros((20, 20), np.int64), r"int64"),
        (np.full((20, 20), 3.0, np.float32), r"\[0, 1\].*3.0"),
        (np.full((20, 20), np.nan, np.float32), r"\[0, 1\]"),
        (np.zeros((5, 20, 20), np.uint8), r"\(5, 20, 20\)"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), r"\(2, 2, 2, 2, 2\)|2, 2, 2"),
        (Image.new("HSV", (8, 8)), r"'HSV'"),
    ]
    for image, message in cases:
        with pytest.raises(ValueError, match=message):
            processor(image)
    with pytest.raises(ValueError, match="'training'"):
        MRMImageProcessor(mode="training")
    with pytest.raises(ValueError, match="do_rescale"):
        processor(np.zeros((20, 20), np.uint8), do_rescale=True)


# Training transforms


@pytest.mark.parametrize(
    "height, width, scale", [(423, 512, (0.08, 1.0)), (512, 423, (0.2, 1.0)), (10, 1000, (0.5, 1.0))]
)
def test_random_resized_crop_draws_torchvision_boxes(height, width, scale):
    transforms = pytest.importorskip("torchvision.transforms")
    crop = RandomResizedCrop(224, scale=scale)
    image = torch.empty(1, height, width)
    for seed in range(200):
        torch.manual_seed(seed)
        expected = transforms.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3])
        torch.manual_seed(seed)
        assert crop.get_params(height, width) == expected
    if width / height > 4 / 3 and scale[0] >= 0.5:  # no try fits: the fallback central crop
        assert crop.get_params(height, width) == (0, (1000 - 13) // 2, 10, 13)


def test_transforms_match_the_published_torchvision_pipelines(processor, radiograph):
    transforms = pytest.importorskip("torchvision.transforms")
    normalise = [transforms.Grayscale(3), transforms.ToTensor(), transforms.Normalize([MRM_MEAN] * 3, [MRM_STD] * 3)]
    bicubic = transforms.InterpolationMode.BICUBIC
    flip = transforms.RandomHorizontalFlip()
    published = {
        "pretraining": transforms.Compose(
            [transforms.RandomResizedCrop(448, scale=(0.2, 1.0), interpolation=bicubic), flip] + normalise
        ),
        "fine-tuning": transforms.Compose([transforms.RandomResizedCrop(224), flip] + normalise),
    }
    ours = {"pretraining": PretrainingTransform(processor), "fine-tuning": FineTuningTransform(processor)}
    image = Image.fromarray(radiograph)
    for name in published:
        for seed in range(4):
            torch.manual_seed(seed)
            reference = published[name](image.convert("RGB"))
            torch.manual_seed(seed)
            output = ours[name]({"image": [image]})["pixel_values"][0]
            assert output.shape == reference.shape
            assert (output - reference).abs().max().item() <= 1.5 * GRAY_LEVEL, (name, seed)


def test_seeded_transforms_are_reproducible_and_keep_other_columns(processor, synthetic):
    batch = {"image": [Image.fromarray(synthetic)] * 3, "label": [0, 1, 0]}
    first = PretrainingTransform(processor, seed=0)(batch)
    again = PretrainingTransform(processor, seed=0)(batch)
    other = PretrainingTransform(processor, seed=1)(batch)
    assert set(first) == {"label", "pixel_values"} and first["label"] == [0, 1, 0]
    assert [tuple(x.shape) for x in first["pixel_values"]] == [(3, 448, 448)] * 3
    assert all(torch.equal(a, b) for a, b in zip(first["pixel_values"], again["pixel_values"]))
    assert not torch.equal(first["pixel_values"][0], first["pixel_values"][1])
    assert not torch.equal(first["pixel_values"][0], other["pixel_values"][0])


def test_seeded_transforms_differ_between_dataloader_workers(processor, synthetic, monkeypatch):
    from types import SimpleNamespace

    import mrm_hf.data.seeding as module

    outputs = []
    for worker in (0, 1):
        monkeypatch.setattr(module, "get_worker_info", lambda worker=worker: SimpleNamespace(id=worker, seed=123))
        transform = FineTuningTransform(processor, seed=0)
        outputs.append(transform({"image": [synthetic]})["pixel_values"][0])
    assert not torch.equal(outputs[0], outputs[1])


def test_fine_tuning_eval_is_the_processor_evaluation_mode(processor, synthetic):
    evaluation = FineTuningTransform(MRMImageProcessor(mode="pretraining"), train=False)
    output = evaluation({"image": [synthetic, synthetic.T.copy()]})["pixel_values"]
    assert torch.equal(output[0], pixel_values(processor, synthetic)[0])
    assert torch.equal(output[1], pixel_values(processor, synthetic.T.copy())[0])
    train = FineTuningTransform(processor, seed=0)({"image": [synthetic]})["pixel_values"]
    assert train[0].shape == (3, 224, 224)


def test_transforms_work_with_datasets_set_transform(processor, synthetic):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [Image.fromarray(synthetic)] * 2, "label": [3, 4]}
    dataset = datasets.Dataset.from_dict(rows, features=features)
    dataset = dataset.with_transform(FineTuningTransform(processor, seed=0))
    batch = dataset[:2]
    assert batch["label"] == [3, 4]
    assert [tuple(x.shape) for x in batch["pixel_values"]] == [(3, 224, 224)] * 2
