"""The README's demo: a few minutes of pre-training on the synthetic records, on CPU."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from mrm_hf import MRMForPreTraining, MRMImageProcessor
from mrm_hf.data import DataCollatorForMRM, make_demo_records
from mrm_hf.transforms import PretrainingTransform


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
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
        feature = model.get_image_features(batch["pixel_values"], noise=noise).pooler_output

        def report_loss(image_feature):
            logits = model.get_report_logits(batch["input_ids"], image_feature, batch["attention_mask"])
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


# The demo's own model at a few steps: what the Quick start runs, shortened.
TINY_DEMO = ["--demo_num_records", "64", "--demo_num_validation", "16", "--demo_image_size", "64", "--max_steps", "4",
             "--per_device_train_batch_size", "16", "--effective_batch_size", "16", "--logging_steps", "1",
             "--eval_strategy", "steps", "--eval_steps", "4", "--save_strategy", "no", "--disable_tqdm", "true"]  # fmt: skip


def test_seeded_demo_reproduces_its_losses_and_weights(tmp_path):
    from safetensors.torch import load_file

    runs = []
    for name in ("first", "second"):
        output_dir = tmp_path / name
        results = run_pretraining.main(
            ["--args_file", str(EXAMPLES / "configs" / "demo.args"), *TINY_DEMO, "--output_dir", str(output_dir)]
        )
        state = (output_dir / "trainer_state.json").read_text()
        losses = [{k: v for k, v in entry.items() if "loss" in k} for entry in json.loads(state)["log_history"]]
        runs.append((results["eval_loss"], losses, load_file(output_dir / "model.safetensors"),
                     AutoTokenizer.from_pretrained(output_dir).get_vocab()))  # fmt: skip
    (loss_a, log_a, weights_a, vocab_a), (loss_b, log_b, weights_b, vocab_b) = runs
    assert vocab_a == vocab_b
    assert loss_a == loss_b and log_a == log_b and len(log_a) >= 5
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_demo_vocabulary_holds_every_demo_word_whole_and_is_the_same_in_every_process():
    import subprocess

    from mrm_hf.data import demo_report_texts
    from mrm_hf.data.demo import sample_record
    from mrm_hf.tokenization_mrm import vocabulary_tokenizer

    tokenizer = vocabulary_tokenizer(demo_report_texts())
    for index in range(300):
        report = sample_record(7, index)[2]
        tokens = tokenizer.tokenize(report)
        assert not [t for t in tokens if t.startswith("##") or t == "[UNK]"], report
    # Python's string hashing differs from process to process: the ids must not depend on it.
    code = "from mrm_hf.data import demo_report_texts; from mrm_hf.tokenization_mrm import vocabulary_tokenizer; " \
           "print(sorted(vocabulary_tokenizer(demo_report_texts()).get_vocab().items(), key=lambda t: t[1]))"
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(EXAMPLES.parent))
        printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert printed.strip() == str(sorted(tokenizer.get_vocab().items(), key=lambda t: t[1]))
