"""The fast data path: draft JPEG decoding, one route from image to pixel values, and augmentation on the device."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import mrm_hf.transforms as transforms_module
from mrm_hf.data import SAMPLE_INDEX, SeededDraws
from mrm_hf.data.collator import collate_images
from mrm_hf.image_processing_mrm import MRM_STD, MRMImageProcessor
from mrm_hf.image_processing_mrm import open_fast
from mrm_hf.transforms import DecodeTransform, DeviceAugmentation, PretrainingTransform, draft_crop


GRAY_LEVEL = 1 / 255 / MRM_STD  # one 8-bit gray level in normalised units
NIH_FULL_RESOLUTION = ("00000001_000.png", "00000002_000.png", "00000013_003.png")  # 1024 x 1024 originals


@pytest.fixture(scope="module")
def processor():
    return MRMImageProcessor(mode="pretraining")


def jpeg_bytes(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def radiograph_jpeg():
    """A real NIH radiograph as JPEG bytes, reduced to 512 x 512 (a prepared-record size)."""
    from conftest import shared_path

    image = Image.open(shared_path("data", "nih14", "images_fullres", "00027426_000.png"))
    return jpeg_bytes(image)


def run(transform, images, seed):
    """`transform` on images with torch's global RNG seeded, as a DataLoader without a seeded transform draws."""
    torch.manual_seed(seed)
    return torch.stack(transform({"image": images})["pixel_values"])


def test_fast_path_crops_the_torchvision_boxes_then_flips(processor, radiograph_jpeg):
    tv = pytest.importorskip("torchvision.transforms")
    transform = PretrainingTransform(processor, size=128)
    for seed in range(6):
        output = run(transform, [{"bytes": radiograph_jpeg, "path": None}], seed)[0]
        torch.manual_seed(seed)
        box = tv.RandomResizedCrop.get_params(torch.empty(1, 512, 512), [0.2, 1.0], [3 / 4, 4 / 3])
        expected = draft_crop(open_fast(radiograph_jpeg), box, (128, 128), Image.Resampling.BICUBIC)
        if torch.rand(1) < 0.5:
            expected = expected[:, ::-1]
        gray = torch.from_numpy(np.ascontiguousarray(expected)).float() / 255.0
        assert torch.equal(output, processor.grayscale_to_pixel_values(gray[None])[0]), seed


def test_draft_decoding_stays_within_a_gray_level_of_a_full_decode_on_real_radiographs(processor, shared, monkeypatch):
    """Stated tolerance: mean difference under 1 gray level, 99th percentile under 3, on crops decoded at 1/2-1/4."""
    scales = []
    original = transforms_module._draft_scale
    monkeypatch.setattr(transforms_module, "_draft_scale", lambda *a: scales.append(original(*a)) or scales[-1])
    fast = PretrainingTransform(processor, size=224)
    exact = PretrainingTransform(processor, size=224, fast_decode=False)
    for name in NIH_FULL_RESOLUTION:
        record = {"bytes": jpeg_bytes(Image.open(shared("data", "nih14", "images_fullres", name))), "path": None}
        for seed in range(3):
            difference = (run(fast, [record], seed)[0] - run(exact, [record], seed)[0]).abs() / GRAY_LEVEL
            assert difference.mean() < 1.0, (name, seed, difference.mean())
            assert difference.flatten().quantile(0.99) < 3.0, (name, seed)
    assert set(scales) >= {2.0}, "the crops were decoded at a reduced DCT scale"


def test_png_and_16_bit_inputs_keep_the_exact_path(processor):
    rng = np.random.default_rng(0)
    eight = Image.fromarray(rng.integers(0, 256, (300, 260), dtype=np.uint8))
    sixteen = Image.fromarray(rng.integers(0, 65536, (300, 260), dtype=np.uint16))
    for image in (eight, sixteen):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        record = {"bytes": buffer.getvalue(), "path": None}
        assert open_fast(record) is None
        fast = run(PretrainingTransform(processor, size=64), [record], 0)
        exact = run(PretrainingTransform(processor, size=64, fast_decode=False), [record], 0)
        assert torch.equal(fast, exact)


def test_each_image_is_converted_to_grayscale_once(processor, monkeypatch):
    calls = []
    original = MRMImageProcessor.convert_to_grayscale
    monkeypatch.setattr(MRMImageProcessor, "convert_to_grayscale", lambda *a, **k: calls.append(1) or original(*a, **k))
    images = [np.full((40, 50), 100, np.uint8), np.full((50, 40), 200, np.uint8)]
    output = run(PretrainingTransform(processor, size=32), images, 0)
    assert len(calls) == 2 and output.shape == (2, 3, 32, 32)
    assert torch.allclose(output[0], torch.full_like(output[0], (100 / 255 - 0.4978) / 0.2449), atol=1e-5)


def test_on_device_boxes_are_the_cpu_paths_for_the_same_generator(processor, monkeypatch):
    """Boxes on the original sizes, drawn in the CPU path's order (box, then flip, image after image)."""
    sizes = [(512, 512), (3056, 2544), (600, 900), (10, 1000)]
    drawn = []
    original = transforms_module.RandomResizedCrop.get_params
    monkeypatch.setattr(
        transforms_module.RandomResizedCrop, "get_params", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1]
    )
    cpu = PretrainingTransform(processor, size=64)
    device = DeviceAugmentation(processor, size=64)
    for seed in range(5):
        torch.manual_seed(seed)
        cpu({"image": [np.zeros(size, np.uint8) for size in sizes]})
        cpu_boxes = drawn[-len(sizes) :]
        boxes, _ = device.draw(torch.tensor(sizes), torch.Generator().manual_seed(seed))
        assert [tuple(box) for box in boxes.tolist()] == cpu_boxes, seed
        assert len(set(cpu_boxes)) == len(sizes)


def test_on_device_augmentation_gives_the_cpu_paths_pixels(processor, radiograph_jpeg):
    # 300 px crops of a 512 px image: the CPU path decodes in full too (no crop is twice the output size).
    cpu = PretrainingTransform(processor, size=300)
    decode = DecodeTransform(size=512)
    device = DeviceAugmentation(processor, size=300)
    record = {"bytes": radiograph_jpeg, "path": None}
    decoded = decode({"image": [record, record]})
    batch = {
        "decoded_images": torch.stack(decoded["decoded_images"]),
        "original_sizes": torch.stack(decoded["original_sizes"]),
        "labels": torch.zeros(2),
    }
    assert batch["decoded_images"].dtype == torch.uint8 and batch["decoded_images"].shape == (2, 512, 512)
    assert batch["original_sizes"].tolist() == [[512, 512]] * 2
    for seed in range(3):
        expected = run(cpu, [record, record], seed)
        output = device(batch, torch.Generator().manual_seed(seed))
        assert set(output) == {"pixel_values", "labels"}
        assert (output["pixel_values"] - expected).abs().max() < 1.5 * GRAY_LEVEL, seed


def test_seeded_on_device_draws_are_each_samples_cpu_draws_in_its_epoch(processor, radiograph_jpeg):
    """With the collator's SeededDraws, a sample's box and flip on the device are the CPU path's for its (seed, epoch,
    sample index), whatever its place in the batch; the next epoch draws anew."""
    draws = SeededDraws(7)
    cpu = PretrainingTransform(processor, size=300, seed=draws)
    device = DeviceAugmentation(processor, size=300, seed=draws)
    indices, record = [4, 9, 2], {"bytes": radiograph_jpeg, "path": None}
    decoded = DecodeTransform(size=512)({"image": [record] * 3, SAMPLE_INDEX: indices})
    examples = [{key: values[i] for key, values in decoded.items()} for i in range(3)]
    batch, reordered = collate_images(examples), collate_images(examples[::-1])
    assert batch[SAMPLE_INDEX].tolist() == indices
    outputs = []
    for epoch in (0, 1):
        draws.set_epoch(epoch)
        expected = torch.stack(cpu({"image": [record] * 3, SAMPLE_INDEX: indices})["pixel_values"])
        output = device(batch)
        assert SAMPLE_INDEX not in output and set(output) == {"pixel_values"}
        assert (output["pixel_values"] - expected).abs().max() < 1.5 * GRAY_LEVEL, epoch
        assert torch.equal(device(reordered)["pixel_values"], output["pixel_values"].flip(0))
        outputs.append(output["pixel_values"])
    assert (outputs[0] - outputs[1]).abs().amax(dim=(1, 2, 3)).min() > 10 * GRAY_LEVEL  # every sample drew anew


def test_decoding_a_large_jpeg_keeps_its_original_size(processor):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1200, 1000), dtype=np.uint8))
    decoded = DecodeTransform(size=256)({"image": {"bytes": jpeg_bytes(image), "path": None}})
    assert decoded["decoded_images"].shape == (256, 256) and decoded["original_sizes"].tolist() == [1200, 1000]


@pytest.mark.parametrize("script", ["trainer", "accelerate"])
def test_scripts_pretrain_on_prepared_records_with_augmentation_on_the_device(script, tmp_path, capsys, monkeypatch):
    from test_pretraining_scripts import SCRIPTS, TINY, train_log

    from mrm_hf.data import make_demo_dataset_dict
    from mrm_hf.data.prepare import prepare_records

    records = make_demo_dataset_dict(num_train=16, num_validation=8, image_size=64, seed=0)
    prepare_records(records, tmp_path / "records", short_side=48, num_proc=1)
    calls = []
    original = DeviceAugmentation.__call__
    spy = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)  # noqa: E731
    monkeypatch.setattr(DeviceAugmentation, "__call__", spy)
    output_dir = tmp_path / "run"
    args = [*TINY, "--dataset", "disk", "--data_dir", str(tmp_path / "records"), "--augment_on_device", "true"]
    args += ["--decode_size", "40", "--max_steps", "2", "--save_strategy", "no", "--output_dir", str(output_dir)]
    SCRIPTS[script].main(args)
    logs = train_log(script, output_dir, capsys)
    assert len(logs) == 2 and all(np.isfinite(entry["loss"]) for entry in logs)
    assert len(calls) == 2 * 2  # two micro-batches per step (effective batch 8, 4 per step), on every one


@pytest.mark.parametrize("device, warns", [("cpu", True), ("meta", False)])
def test_augmentation_on_a_cpu_device_warns_that_it_does_not_pay(device, warns, caplog):
    import pretraining_setup
    from conftest import tiny_config

    from mrm_hf import MRMForPreTraining

    model = MRMForPreTraining(tiny_config())
    data_args = pretraining_setup.DataArguments(augment_on_device=True)
    with caplog.at_level("WARNING", logger=pretraining_setup.logger.name):
        augment = pretraining_setup.device_augmentation(model, MRMImageProcessor(), data_args, device=device)
    assert isinstance(augment, DeviceAugmentation)
    assert ("--augment_on_device on a CPU" in caplog.text) == warns, caplog.text
