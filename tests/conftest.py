import os
import sys
from pathlib import Path

import pytest


# Nothing in the tests may reach the Hub: they build what they need or read ../shared.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MRM_SHARED_DIR", REPO_ROOT.parent / "shared"))
# The run scripts and the pre-training set-up they share are modules of examples/, as `python examples/...` sees them.
sys.path.insert(0, str(REPO_ROOT / "examples"))


# Screenshots that browser tests took, listed at the end of the run (pytest_terminal_summary below).
SCREENSHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "screenshots of the demo page")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip that says what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads real data from ../shared (set MRM_SHARED_DIR to point elsewhere).")
    return path


@pytest.fixture
def shared():
    return shared_path


def tiny_config(**overrides):
    """A small MRM for fast tests: 32 px input, 64 px reconstruction, 8 px patches."""
    from mrm_hf import MRMConfig

    sizes = dict(
        image_size=32,
        patch_size=8,
        reconstruction_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=64,
        report_vocab_size=60,
        report_hidden_size=16,
        report_num_hidden_layers=2,
        report_num_attention_heads=2,
        report_intermediate_size=32,
        report_max_position_embeddings=12,
    )
    sizes.update(overrides)
    return MRMConfig(**sizes)


def save_tiny_folder(folder: Path, kind: str, labels=("Atelectasis", "Effusion", "Pneumothorax")) -> Path:
    """A tiny, untrained MRM folder of one kind ("classifier", "segmentation" or "pretraining"), as the scripts save
    one: model, processor and (pre-training) report tokenizer. The classifier's head is drawn with std 1, so that its
    multi-label scores differ."""
    import torch

    from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor, MRMModel, MRMProcessor
    from mrm_hf.processing_mrm import encoder_image_processor
    from mrm_hf.segmentation import build_segmentation_model
    from mrm_hf.tokenization_mrm import vocabulary_tokenizer

    torch.manual_seed(0)
    if kind == "classifier":
        config = tiny_config(num_labels=len(labels), id2label=dict(enumerate(labels)),
                             label2id={name: i for i, name in enumerate(labels)},
                             problem_type="multi_label_classification")
        model = MRMForImageClassification(config)
        torch.nn.init.normal_(model.classifier.weight, std=1.0)
        model.save_pretrained(folder)
        encoder_image_processor(config.image_size).save_pretrained(folder)
    elif kind == "segmentation":
        MRMModel(tiny_config(num_hidden_layers=4)).save_pretrained(folder / "encoder")
        build_segmentation_model(str(folder / "encoder"), decoder_channels=16, auxiliary_channels=8).save_pretrained(
            folder)
        MRMImageProcessor(mode="segmentation", size={"height": 32, "width": 32}).save_pretrained(folder)
    elif kind == "pretraining":
        tokenizer = vocabulary_tokenizer(["no pleural effusion", "small left pneumothorax", "normal heart size"],
                                         max_length=12)
        config = tiny_config(report_vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        MRMForPreTraining(config).save_pretrained(folder)
        MRMProcessor(encoder_image_processor(config.image_size), tokenizer,
                     reconstruction_size=config.reconstruction_size).save_pretrained(folder)
    else:
        raise ValueError(f"save_tiny_folder kind: expected classifier, segmentation or pretraining; found {kind!r}.")
    return folder


def tiny_batch(config, batch_size=2, seed=0, length=None):
    """Random high-resolution images and masked reports with -100 labels on unmasked tokens."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    length = length or config.report_max_position_embeddings
    size = config.reconstruction_size
    pixel_values = torch.randn(batch_size, config.num_channels, size, size, generator=generator)
    ids = torch.randint(4, config.report_vocab_size, (batch_size, length), generator=generator)
    ids[:, 0] = 2
    attention_mask = torch.ones_like(ids)
    attention_mask[0, length - 3 :] = 0  # a padded report
    ids[attention_mask == 0] = 0
    masked = (torch.rand(ids.shape, generator=generator) < 0.5) & (attention_mask == 1)
    masked[:, 0] = False
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    input_ids = torch.where(masked, torch.full_like(ids, 3), ids)
    return dict(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, labels=labels), ids


BLOCK_MRM_HF = """
import sys
class _BlockMRM:
    def find_spec(self, name, path=None, target=None):
        if name == "mrm_hf" or name.startswith("mrm_hf."):
            raise ModuleNotFoundError(f"mrm_hf is blocked in this test: {name}")
sys.meta_path.insert(0, _BlockMRM())
try:
    import mrm_hf
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("mrm_hf is importable: the test would not show that the saved code stands alone")
"""


def run_without_mrm_hf(code: str, tmp_path, timeout: int = 300):
    """Run `code` in a fresh Python where `mrm_hf` cannot be imported; return its stdout."""
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"), PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_MRM_HF + code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout
