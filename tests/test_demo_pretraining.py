"""The README's demo: a few minutes of pre-training on the synthetic records, on CPU."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from mrm_hf import MRMForPreTraining, MRMImageProcessor
from mrm_hf.data import DataCollatorForMRM, make_demo_records
from mrm_hf.transforms import PretrainingTransform


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import run_pretraining  # noqa: E402


def held_out_report_losses(output_dir: Path, num_records: int = 256) -> dict[str, float]:
    """Masked-token report loss on unseen demo records: with the image feature, zeroed, and from another record."""
    model = MRMForPreTraining.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    processor = MRMImageProcessor.from_pretrained(output_dir)
    size = model.config.reconstruction_size
    records = make_demo_records(num_records, 128, seed=12345).with_transform(
        PretrainingTransform(processor, size=size, train=False)
    )
    collator = DataCollatorForMRM(tokenizer, max_length=model.config.report_max_position_embeddings, seed=0)
    batch = collator([records[i] for i in range(num_records)])
    noise = torch.rand(num_records, model.config.num_patches, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent = model.image_encoder(model.downsample(batch["pixel_values"]), noise=noise).last_hidden_state
        feature = model.fusion(latent)

        def report_loss(image_feature):
            logits = model.report_branch(batch["input_ids"], image_feature, batch["attention_mask"])
            labelled = batch["labels"] != -100
            return F.cross_entropy(logits[labelled], batch["labels"][labelled]).item()

        return {
            "image": report_loss(feature),
            "zeroed": report_loss(torch.zeros_like(feature)),
            "other_image": report_loss(feature.roll(1, dims=0)),
        }


def test_demo_pretraining_makes_the_report_branch_use_the_image_feature(tmp_path, record_property):
    output_dir = tmp_path / "demo"
    run_pretraining.main(
        ["--args_file", str(EXAMPLES / "configs" / "demo.args"), "--output_dir", str(output_dir),
         "--num_train_epochs", "4", "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "true"]
    )  # fmt: skip
    losses = held_out_report_losses(output_dir)
    for name, value in losses.items():
        record_property(f"held_out_report_loss_{name}", value)
    print("held-out report loss:", losses)
    # The report branch has learned to read the image feature: without it, held-out reports are predicted worse.
    assert losses["image"] < losses["zeroed"] - 0.01, losses
