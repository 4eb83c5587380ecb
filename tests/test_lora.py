"""run_classification.py --lora_rank: peft adapters on a frozen encoder, saved as an adapter and merged."""

import json
import shutil

import pytest
import torch
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, pipeline

from conftest import shared_path, tiny_config
from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMImageProcessor


import run_classification  # noqa: E402
from run_classification import ModelArguments, add_lora_adapters, merged_classifier  # noqa: E402


def tiny_classifier(num_labels=3, seed=0):
    torch.manual_seed(seed)
    return MRMForImageClassification(tiny_config(num_labels=num_labels, problem_type="multi_label_classification"))


@pytest.mark.parametrize(
    "modules, adapted", [(None, ("qkv", "proj")), ("qkv,proj,fc1,fc2", ("qkv", "proj", "fc1", "fc2"))]
)
def test_only_the_adapters_and_the_head_receive_gradients(modules, adapted):
    model_args = ModelArguments(model_type="mrm", lora_rank=4, lora_target_modules=modules)
    model = add_lora_adapters(tiny_classifier(), model_args)
    torch.manual_seed(1)
    output = model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.randint(0, 2, (2, 3)).float())
    output.loss.backward()
    # lora_B starts at 0, so lora_A's first gradient is 0: count the gradients that exist
    with_grad = sorted(name for name, p in model.named_parameters() if p.grad is not None)
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)

    layers, blocks = 2, {"qkv": "attention.qkv", "proj": "attention.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
    expected = sorted(
        [f"base_model.model.image_encoder.layers.{i}.{blocks[m]}.lora_{ab}.default.weight"
         for i in range(layers) for m in adapted for ab in "AB"]
        + [f"base_model.model.classifier.modules_to_save.default.{p}" for p in ("weight", "bias")]
    )  # fmt: skip
    assert len(with_grad) == 2 * layers * len(adapted) + 2  # 10 with the attention only, 18 with the MLP
    assert with_grad == expected and trainable == expected
    assert all(p.grad.abs().sum() > 0 for name, p in model.named_parameters() if "lora_B" in name)


def test_lora_options_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match=r"--lora_alpha shape LoRA adapters: expected them only with --lora_rank"):
        ModelArguments(model_type="mrm", lora_alpha=16)
    with pytest.raises(ValueError, match=r"expected no --linear_probe with it; found --linear_probe True"):
        ModelArguments(model_type="mrm", lora_rank=4, linear_probe=True)
    with pytest.raises(ValueError, match=r"--lora_target_modules: expected names from \['qkv', 'proj', 'fc1', 'fc2'\]"
                                         r"; found 'qkv,query'"):
        ModelArguments(model_type="mrm", lora_rank=4, lora_target_modules="qkv,query")
    assert ModelArguments(model_type="mrm", lora_rank=8).lora_alpha == 8.0  # scale alpha / rank = 1 by default


def lora_argv(model_dir, covid, out, steps=4, resume=None):
    val = str(covid / "covid1_val.csv")
    return [
        "--model_name_or_path", model_dir, "--dataset", "csv", "--train_csv", str(covid / "covid1_train.csv"),
        "--validation_csv", val, "--test_csv", val, "--label_columns", "label", "--lora_rank", "4",
        "--lora_target_modules", "qkv,proj,fc1", "--output_dir", str(out), "--max_steps", str(steps),
        "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "64", "--learning_rate", "0.05",
        "--warmup_steps", "1", "--seed", "0", "--use_cpu", "--disable_tqdm", "true", "--report_to", "none",
        *(["--resume_from_checkpoint", str(resume)] if resume else []),
    ]  # fmt: skip


def test_lora_run_saves_an_adapter_and_a_merged_classifier_and_resumes_exactly(tmp_path):
    covid = shared_path("data", "covid")
    torch.manual_seed(0)
    MRMForPreTraining(tiny_config()).save_pretrained(tmp_path / "tiny")
    out = tmp_path / "out"
    results = run_classification.main(lora_argv(str(tmp_path / "tiny"), covid, out))

    # The peft way: adapter_config.json and the adapter weights, the head among them
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 4.0
    assert adapter_config["modules_to_save"] == ["classifier"]
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert sum(".lora_A." in key for key in weights) == 2 * 3 and any("classifier" in key for key in weights)

    # The merged folder opens with the Auto class and gives the adapter model's logits
    image = Image.open(covid / "images" / sorted(p.name for p in (covid / "images").iterdir())[0]).convert("RGB")
    pixel_values = MRMImageProcessor.from_pretrained(out)(image, return_tensors="pt")["pixel_values"]
    merged = AutoModelForImageClassification.from_pretrained(out).eval()
    assert type(merged) is MRMForImageClassification and not any("lora" in k for k in merged.state_dict())
    base = MRMForImageClassification.from_pretrained(tmp_path / "tiny", num_labels=1, id2label={0: "label"},
                                                     label2id={"label": 0})
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    with torch.no_grad():
        merged_logits, adapted_logits = merged(pixel_values).logits, adapted(pixel_values=pixel_values).logits
    assert torch.allclose(merged_logits, adapted_logits, atol=1e-5, rtol=1e-5)
    source = load_file(tmp_path / "tiny" / "model.safetensors")
    for name in ("layers.1.attention.qkv.weight", "layers.1.mlp.fc1.weight", "layers.1.mlp.fc2.weight"):
        changed = not torch.equal(merged.state_dict()[f"image_encoder.{name}"], source[f"image_encoder.{name}"])
        assert changed == ("fc2" not in name), name  # the adapters trained and were merged where they were, only there
    assert torch.allclose(merged_classifier(adapted)(pixel_values).logits, adapted_logits, atol=1e-5, rtol=1e-5)

    # ... and the pipeline: one sigmoid score
    scores = pipeline("image-classification", model=str(out))(image)
    assert scores[0]["label"] == "label"
    assert scores[0]["score"] == pytest.approx(torch.sigmoid(merged_logits)[0, 0].item(), abs=1e-6)

    # Resuming from the step-2 checkpoint (in a fresh folder) ends where the uninterrupted run ended
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    resumed_results = run_classification.main(lora_argv(str(tmp_path / "tiny"), covid, resumed,
                                                        resume=resumed / "checkpoint-2"))
    again = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert again.keys() == weights.keys() and all(torch.equal(again[k], weights[k]) for k in weights)
    assert resumed_results["test_mean_auc"] == results["test_mean_auc"]
    assert (resumed / "test_predictions.csv").read_text() == (out / "test_predictions.csv").read_text()
