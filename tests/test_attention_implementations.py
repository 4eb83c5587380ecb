"""What MRMPreTrainedModel's attention and compile flags promise, checked on CPU.

`_supports_sdpa` is checked against eager in test_modeling.py and in transformers' common tests; here are the other
kernels and full-graph compilation.
"""

import pytest
import torch
from conftest import tiny_batch, tiny_config
from transformers.utils import is_flash_attn_2_available

from mrm_hf import MRMForImageClassification, MRMForPreTraining


def _named(name: str):
    """An assert_close message that says which output or parameter differs."""
    return lambda message: f"{name}: {message}"


def _pretraining_pair(attn_implementation: str):
    """An eager MRMForPreTraining and a copy with the same weights on `attn_implementation`."""
    torch.manual_seed(0)
    eager = MRMForPreTraining(tiny_config(attn_implementation="eager")).eval()
    other = MRMForPreTraining(tiny_config(attn_implementation=attn_implementation)).eval()
    other.load_state_dict(eager.state_dict())
    assert other.config._attn_implementation == attn_implementation
    return eager, other


def test_compiled_fullgraph_pretraining_matches_eager_with_gradients():
    # `_can_compile_fullgraph`: dynamo captures forward and backward as one graph each (fullgraph=True raises on any
    # graph break). The aot_eager backend runs that graph without inductor's C++ build, which takes about a minute on
    # CPU; inductor gave the same outputs (largest difference 1.4e-6) when measured.
    # eval(): dropout off, so that both runs compute the same function; gradients flow all the same.
    eager, compiled_model = _pretraining_pair("sdpa")
    config = eager.config
    batch, _ = tiny_batch(config)  # one report padded: the padding mask is part of the graph
    noise = torch.rand(2, config.num_patches, generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")

    expected, got = eager(**batch, noise=noise), compiled(**batch, noise=noise)
    for name in ("loss", "image_loss", "report_loss", "image_logits", "report_logits"):
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=_named(name))
    expected.loss.backward()
    got.loss.backward()
    grads = dict(compiled_model.named_parameters())
    for name, param in eager.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(grads[name].grad, param.grad, rtol=1e-4, atol=1e-5, msg=_named(name))


def test_compiled_fullgraph_classifier_matches_eager():
    torch.manual_seed(0)
    model = MRMForImageClassification(tiny_config(num_labels=3)).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        expected = model(pixel_values, output_hidden_states=True)
        got = compiled(pixel_values, output_hidden_states=True)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    assert len(got.hidden_states) == model.config.num_hidden_layers + 1


def test_flex_attention_matches_eager_on_cpu():
    # PyTorch's flex attention runs on CPU for inference only (no backward there), so no_grad.
    eager, flex = _pretraining_pair("flex_attention")
    batch, _ = tiny_batch(eager.config)  # the padded report goes through flex attention's block mask
    noise = torch.rand(2, eager.config.num_patches, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = eager(**batch, noise=noise), flex(**batch, noise=noise)
    for name in ("image_logits", "report_logits", "image_loss", "report_loss"):
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=_named(name))


@pytest.mark.skipif(is_flash_attn_2_available(), reason="checks the refusal where the flash-attn package is absent")
def test_flash_attention_2_is_refused_only_for_the_missing_package():
    # FlashAttention 2 needs a CUDA GPU and the flash-attn package. Where they are absent, transformers must refuse it
    # for the missing package, not because MRM would not support it; a model without the flag gets the latter.
    with pytest.raises(ImportError, match="the package for FlashAttention2 doesn't seem to be installed"):
        MRMForPreTraining(tiny_config(attn_implementation="flash_attention_2"))

    class WithoutFlashAttention(MRMForPreTraining):
        _supports_flash_attn = False

    with pytest.raises(ValueError, match="does not support Flash Attention 2"):
        WithoutFlashAttention(tiny_config(attn_implementation="flash_attention_2"))


@pytest.mark.skipif(
    not (torch.cuda.is_available() and is_flash_attn_2_available()), reason="needs a CUDA GPU and the flash-attn package"
)
def test_flash_attention_2_matches_sdpa_on_gpu():
    # Head widths of the tiny config are 8, which FlashAttention supports; bf16 as FlashAttention needs half precision.
    torch.manual_seed(0)
    sdpa = MRMForPreTraining(tiny_config(attn_implementation="sdpa")).eval()
    flash = MRMForPreTraining(tiny_config(attn_implementation="flash_attention_2")).eval()
    flash.load_state_dict(sdpa.state_dict())
    sdpa.to("cuda", torch.bfloat16)
    flash.to("cuda", torch.bfloat16)
    batch, _ = tiny_batch(sdpa.config)  # the padded report goes through FlashAttention's unpadding
    batch = {key: value.to("cuda") for key, value in batch.items()}
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    noise = torch.rand(2, sdpa.config.num_patches, generator=torch.Generator().manual_seed(1)).to("cuda")
    with torch.no_grad():
        expected, got = sdpa(**batch, noise=noise), flash(**batch, noise=noise)
    for name in ("image_logits", "report_logits"):
        torch.testing.assert_close(got[name].float(), expected[name].float(), rtol=2e-2, atol=2e-2, msg=_named(name))
