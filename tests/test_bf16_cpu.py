"""bf16 on a CPU, the documented opt-in (docs/performance.md, "bf16 on a CPU"): inference through
`dtype=torch.bfloat16` and training under `--bf16` (autocast) give finite results close to fp32's. The tolerances here
are for the tiny test model; benchmarks/train_step.py and benchmarks/bf16_inference.py measure ViT-B's."""

import pytest
import torch
from PIL import Image
from transformers import pipeline

from conftest import tiny_batch, tiny_config
from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMModel
from mrm_hf.processing_mrm import encoder_image_processor


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.float() - reference.float()).norm() / reference.float().norm()).item()


def test_bf16_encoder_features_are_finite_and_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    MRMModel(tiny_config()).save_pretrained(tmp_path)
    fp32 = MRMModel.from_pretrained(tmp_path).eval()
    bf16 = MRMModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = fp32(pixel_values).pooler_output
        half = bf16(pixel_values.to(torch.bfloat16)).pooler_output
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    assert relative_error(half, reference) < 2e-2


def test_bf16_classification_pipeline_scores_are_finite_and_close_to_fp32(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    MRMForImageClassification(config).save_pretrained(tmp_path)
    encoder_image_processor(32).save_pretrained(tmp_path)
    images = [Image.new("L", (48, 40), 90), Image.radial_gradient("L").resize((40, 40))]
    scores = {}
    for dtype in (torch.float32, torch.bfloat16):
        classify = pipeline("image-classification", model=str(tmp_path), dtype=dtype)
        assert classify.model.dtype == dtype
        results = classify(images, top_k=3)
        scores[dtype] = torch.tensor([[r["score"] for r in sorted(res, key=lambda r: r["label"])] for res in results])
    assert torch.isfinite(scores[torch.bfloat16]).all()
    assert torch.allclose(scores[torch.bfloat16], scores[torch.float32], atol=2e-2)


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32():
    torch.manual_seed(0)
    model = MRMForPreTraining(tiny_config()).train()
    batch, _ = tiny_batch(model.config, batch_size=4)
    noise = torch.rand(4, model.config.num_patches, generator=torch.Generator().manual_seed(1))
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(2)  # the same dropout draws
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch, noise=noise).loss
        loss.backward()
        results[bf16] = loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
    (loss, grads), (reference_loss, reference_grads) = results[True], results[False]
    assert torch.isfinite(loss) and torch.isfinite(grads).all()
    assert loss.item() == pytest.approx(reference_loss.item(), rel=2e-2)
    assert relative_error(grads, reference_grads) < 5e-2
