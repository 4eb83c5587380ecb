import json
import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from conftest import run_without_mrm_hf, tiny_batch, tiny_config
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from mrm_hf import MRMConfig, MRMForImageClassification, MRMForPreTraining, MRMModel
from mrm_hf.modeling_mrm import AUTO_MODEL_CLASSES, get_2d_sincos_position_table


def trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_default_config_is_the_published_model():
    config = MRMConfig()
    assert (config.image_size, config.patch_size, config.hidden_size, config.num_hidden_layers) == (224, 16, 768, 12)
    assert (config.num_attention_heads, config.intermediate_size, config.layer_norm_eps) == (12, 3072, 1e-6)
    assert (config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads) == (768, 4, 6)
    assert config.reconstruction_size == 448 and config.reconstruction_patch_size == 32 and config.norm_pix_loss
    assert (config.report_vocab_size, config.report_hidden_size, config.report_num_hidden_layers) == (30000, 384, 6)
    assert (config.report_max_position_embeddings, config.report_layer_norm_eps) == (100, 1e-12)
    assert config.mask_ratio == 0.75 and config.tie_word_embeddings is False

    with torch.device("meta"):
        model = MRMForPreTraining(config)
    # MRM_NOTES §1.4, from the published code (BERT's unused pooler excluded).
    assert trainable(model.image_encoder) == 85_647_360
    assert trainable(model.image_decoder) == 31_306_752
    assert trainable(model.fusion) == 295_296
    assert trainable(model.report_branch.embeddings) == 11_559_936
    assert trainable(model.report_branch.layers) == 10_646_784
    assert trainable(model.report_branch.head) == 11_698_608
    assert not model.image_encoder.embeddings.position_embeddings.requires_grad
    assert not model.image_decoder.position_embeddings.requires_grad


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 100}, "hidden_size: expected a multiple of num_attention_heads (12); found 100"),
        ({"decoder_num_attention_heads": 5}, "decoder_hidden_size: expected a multiple of decoder_num_attention_heads (5); found 768"),
        ({"report_hidden_size": 385}, "report_hidden_size: expected a multiple of report_num_attention_heads (6); found 385"),
        ({"mask_ratio": 1.0}, "mask_ratio: expected a fraction in [0, 1); found 1.0"),
        ({"mask_ratio": -0.1}, "mask_ratio: expected a fraction in [0, 1); found -0.1"),
        ({"image_size": 230}, "image_size: expected a multiple of patch_size (16); found 230"),
        ({"reconstruction_size": 300}, "reconstruction_size: expected a whole multiple of image_size (224), e.g. 448; found 300"),
        ({"pad_token_id": 30000}, "pad_token_id: expected an id of the report vocabulary (0 to 29999); found 30000"),
    ],
)
def test_invalid_config_raises_a_clear_error(overrides, message):
    with pytest.raises(StrictDataclassError) as error:
        MRMConfig(**overrides)
    assert message in str(error.value)


def test_wrongly_typed_config_value_is_refused():
    with pytest.raises(StrictDataclassError, match="mask_ratio"):
        MRMConfig(mask_ratio="0.75")


def test_published_sincos_table_differs_from_mae_only_in_frequencies():
    table = get_2d_sincos_position_table(8, 2)
    assert table.shape == (5, 8) and torch.all(table[0] == 0)
    # Patch (row 1, col 0) is index 3; x (column) half first: sin(0)=0, cos(0)=1; then y: omega = [1, 10000**-0.25].
    omega = torch.tensor([1.0, 10000 ** (-1 / 8)])
    expected = torch.cat([torch.zeros(2), torch.ones(2), torch.sin(omega), torch.cos(omega)])
    torch.testing.assert_close(table[3], expected)


def test_pretraining_forward_at_published_sizes():
    torch.manual_seed(0)
    model = MRMForPreTraining(MRMConfig()).eval()
    pixel_values = torch.randn(1, 3, 448, 448)
    input_ids = torch.randint(4, 30000, (1, 100))
    out = model(pixel_values, input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=input_ids)
    assert out.image_logits.shape == (1, 196, 3072)
    assert out.report_logits.shape == (1, 100, 30000)  # (batch, length, vocab), as every masked-LM head
    assert out.mask.shape == (1, 196) and out.mask.sum() == 147
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, out.image_loss + out.report_loss)
    # An untrained report head is close to uniform over 30000 tokens.
    assert abs(out.report_loss.item() - math.log(30000)) < 1.0


def test_image_only_pretraining_has_no_report_loss():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    out = model(batch["pixel_values"])
    assert out.report_loss is None and out.report_logits is None
    torch.testing.assert_close(out.loss, out.image_loss)


def test_noise_fixes_the_mask_and_keeps_the_smallest_noise():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    first = model(**batch, noise=noise)
    second = model(**batch, noise=noise)
    torch.testing.assert_close(first.loss, second.loss, rtol=0, atol=0)
    num_keep = int(model.config.num_patches * (1 - model.config.mask_ratio))
    kept = torch.argsort(noise, dim=1)[:, :num_keep]
    expected = torch.ones_like(noise).scatter(1, kept, 0.0)
    assert torch.equal(first.mask, expected)
    different = model(**batch, noise=torch.rand(2, model.config.num_patches))
    assert not torch.equal(different.mask, first.mask)


def test_noise_of_the_wrong_shape_is_refused():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    with pytest.raises(ValueError, match=r"noise: expected shape \(2, 16\); found \(2, 15\)"):
        model(**batch, noise=torch.rand(2, 15))


@pytest.mark.parametrize("mask_ratio", [1.0, -0.1])
def test_a_mask_ratio_outside_the_unit_interval_is_refused_by_the_encoder_as_by_the_config(mask_ratio):
    model = MRMModel(tiny_config()).eval()
    with pytest.raises(ValueError, match=rf"mask_ratio: expected a fraction in \[0, 1\); found {mask_ratio}") as error:
        model(torch.randn(1, 3, 32, 32), mask_ratio=mask_ratio)
    with pytest.raises(StrictDataclassError) as config_error:
        tiny_config(mask_ratio=mask_ratio)
    assert str(error.value) in str(config_error.value)


def test_pixel_values_must_be_the_high_resolution_view():
    model = MRMForPreTraining(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"expected the high-resolution view, \(batch, 3, 64, 64\); found \(1, 3, 32, 32\)"):
        model(torch.randn(1, 3, 32, 32))


def test_encoder_input_is_the_published_bicubic_resize():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    model = MRMForPreTraining(tiny_config()).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    published = resize(pixel_values, [32, 32], interpolation=InterpolationMode.BICUBIC, antialias=False)
    torch.testing.assert_close(model.downsample(pixel_values), published, rtol=0, atol=1e-6)
    antialiased = MRMForPreTraining(tiny_config(downsample_antialias=True)).downsample(pixel_values)
    assert not torch.allclose(antialiased, published, atol=1e-3)
    assert torchvision is not None


@pytest.mark.parametrize("sparse_prediction", [False, True])
def test_report_loss_counts_exactly_the_labelled_positions(sparse_prediction):
    model = MRMForPreTraining(tiny_config(sparse_prediction=sparse_prediction)).eval()
    batch, original_ids = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    out = model(**batch, noise=noise)
    unlabelled = model(**{k: v for k, v in batch.items() if k != "labels"}, noise=noise)
    labelled = batch["labels"] != -100
    assert unlabelled.report_logits.shape == (*batch["input_ids"].shape, model.config.report_vocab_size)
    if sparse_prediction:
        # The head scores the labelled positions only: the rows of labels[labels != -100].
        assert out.report_logits.shape == (int(labelled.sum()), model.config.report_vocab_size)
        torch.testing.assert_close(out.report_logits, unlabelled.report_logits[labelled])
    else:
        # Labels change the loss, never the logits' shape or values.
        torch.testing.assert_close(out.report_logits, unlabelled.report_logits)
    expected = F.cross_entropy(unlabelled.report_logits[labelled], batch["labels"][labelled])
    torch.testing.assert_close(out.report_loss, expected)

    # The published code's labels: every original id, [CLS] and [PAD] included, averaged over all positions.
    published = model(**{**batch, "labels": original_ids}, noise=noise)
    expected = F.cross_entropy(unlabelled.report_logits.flatten(0, 1), original_ids.flatten())
    torch.testing.assert_close(published.report_loss, expected)


def test_image_loss_is_norm_pix_mse_over_masked_patches():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    out = model(batch["pixel_values"], noise=torch.rand(2, model.config.num_patches))
    p = model.config.reconstruction_patch_size
    patches = batch["pixel_values"].unfold(2, p, p).unfold(3, p, p)  # (B, C, h, w, p, p)
    target = patches.permute(0, 2, 3, 4, 5, 1).reshape(2, -1, p * p * 3)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = ((out.image_logits - target) ** 2).mean(-1)
    torch.testing.assert_close(out.image_loss, per_patch[out.mask.bool()].mean())
    torch.testing.assert_close(model.unpatchify(model.patchify(batch["pixel_values"])), batch["pixel_values"])


def test_fusion_feeds_the_image_into_the_report_branch():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    out = model(**batch, noise=noise)
    other_images = model(**{**batch, "pixel_values": torch.randn_like(batch["pixel_values"])}, noise=noise)
    assert not torch.allclose(out.report_logits, other_images.report_logits)
    # ...through the mean of the visible patch tokens: the same visible tokens give the same report logits.
    encoder = model.image_encoder(model.downsample(batch["pixel_values"]), noise=noise)
    feature = model.fusion.projection(encoder.last_hidden_state[:, 1:].mean(1))
    logits = model.report_branch(batch["input_ids"], feature, batch["attention_mask"])
    torch.testing.assert_close(logits, out.report_logits)


def forward_report_feature(model, **inputs):
    """The outputs of `model(**inputs)` and the image feature its forward added to every report token."""
    fed = []
    hook = model.report_branch.register_forward_hook(lambda module, args, output: fed.append(args[1]))
    try:
        outputs = model(**inputs)
    finally:
        hook.remove()
    return outputs, fed[0]


def test_get_image_features_is_the_feature_forward_adds_to_the_report():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    with torch.no_grad():
        _, fed = forward_report_feature(model, **batch, noise=noise)
        masked = model.get_image_features(batch["pixel_values"], noise=noise)
        whole = model.get_image_features(batch["pixel_values"])
    assert torch.equal(masked.pooler_output, fed)
    assert masked.mask.sum() == 2 * 12 and whole.mask is None and whole.ids_restore is None
    assert whole.pooler_output.shape == (2, 16) and whole.last_hidden_state.shape == (2, 1 + 16, 32)
    assert not torch.allclose(whole.pooler_output, fed)  # report filling reads every patch, pre-training a quarter

    # With nothing masked, forward adds the whole image's feature (its patches shuffled, so up to the order of a sum).
    unmasked = MRMForPreTraining(tiny_config(mask_ratio=0.0)).eval()
    unmasked.load_state_dict(model.state_dict())
    with torch.no_grad():
        _, fed = forward_report_feature(unmasked, **batch)
    torch.testing.assert_close(fed, whole.pooler_output)


@pytest.mark.parametrize("sparse_prediction", [False, True])
def test_get_report_logits_gives_forwards_report_logits(sparse_prediction):
    model = MRMForPreTraining(tiny_config(sparse_prediction=sparse_prediction)).eval()
    batch, _ = tiny_batch(model.config)
    with torch.no_grad():
        out, fed = forward_report_feature(model, **batch, noise=torch.rand(2, model.config.num_patches))
        logits = model.get_report_logits(batch["input_ids"], fed, batch["attention_mask"])
    expected = logits[batch["labels"] != -100] if sparse_prediction else logits
    torch.testing.assert_close(out.report_logits, expected)


def test_doors_of_an_image_only_model_and_a_wrong_feature():
    image_only = MRMForPreTraining(tiny_config(use_report_branch=False)).eval()
    batch, _ = tiny_batch(image_only.config)
    features = image_only.get_image_features(batch["pixel_values"])
    assert features.pooler_output is None and features.last_hidden_state.shape == (2, 1 + 16, 32)
    with pytest.raises(ValueError, match=r"get_report_logits: expected a model with a report branch; found one"):
        image_only.get_report_logits(batch["input_ids"], torch.zeros(2, 16))
    model = MRMForPreTraining(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"image_features: expected shape \(2, 16\) .*; found \(2, 32\)"):
        model.get_report_logits(batch["input_ids"], features.last_hidden_state[:, 0])
    with pytest.raises(ValueError, match=r"expected the high-resolution view, \(batch, 3, 64, 64\); found \(2, 3, 32, 32\)"):
        model.get_image_features(torch.randn(2, 3, 32, 32))


def test_loss_with_num_items_in_batch_is_this_batchs_share_of_the_accumulated_loss():
    model = MRMForPreTraining(tiny_config()).eval()
    batch, _ = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    counts = torch.stack([torch.tensor(2), (batch["labels"] != -100).sum()])
    with torch.no_grad():
        own = model(**batch, noise=noise)
        alone = model(**batch, noise=noise, num_items_in_batch=counts)  # the whole accumulated batch
        half = model(**batch, noise=noise, num_items_in_batch=2 * counts)  # another batch as large elsewhere
    torch.testing.assert_close(alone.loss, own.loss)
    torch.testing.assert_close(half.loss, own.loss / 2)
    assert torch.equal(half.image_loss, own.image_loss) and torch.equal(half.report_loss, own.report_loss)
    with pytest.raises(ValueError, match=r"num_items_in_batch: expected .* shape \(2,\); found shape \(\)"):
        model(**batch, num_items_in_batch=counts[1])


@pytest.mark.parametrize("model_class", [MRMModel, MRMForPreTraining])
def test_sdpa_matches_eager(model_class):
    torch.manual_seed(0)
    config = tiny_config()
    sdpa = model_class(config).eval()
    eager = model_class(tiny_config()).eval()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    noise = torch.rand(2, config.num_patches)
    if model_class is MRMModel:
        pixel_values = torch.randn(2, 3, 32, 32)
        a, b = sdpa(pixel_values, noise=noise), eager(pixel_values, noise=noise)
        torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=1e-5, atol=1e-5)
    else:
        batch, _ = tiny_batch(config)  # one report is padded: the padding mask goes through both kernels
        a, b = sdpa(**batch, noise=noise), eager(**batch, noise=noise)
        for name in ("image_logits", "report_logits", "image_loss", "report_loss"):
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = tiny_config()
    plain = MRMForPreTraining(config).train()
    checkpointed = MRMForPreTraining(tiny_config()).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.is_activation_checkpointing
    batch, _ = tiny_batch(config)
    noise = torch.rand(2, config.num_patches)
    # Dropout draws differently when a layer is recomputed: compare without it.
    for model in (plain, checkpointed):
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        for layer in model.report_branch.layers:
            layer.attention.attention_dropout = 0.0
        model(**batch, noise=noise).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert plain.image_encoder.layers[0].attention.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model_class", [MRMModel, MRMForPreTraining, MRMForImageClassification])
def test_save_and_load_round_trip_exactly(model_class, tmp_path):
    model = model_class(tiny_config(num_labels=3)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert {"configuration_mrm.py", "modeling_mrm.py"} <= {p.name for p in tmp_path.iterdir()}
    loaded = model_class.from_pretrained(tmp_path).eval()
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    for key in original:
        assert torch.equal(original[key], reloaded[key]), key
    assert loaded.config.to_diff_dict() == model.config.to_diff_dict()
    half = model_class.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def test_auto_classes_resolve_mrm(tmp_path):
    config = tiny_config(num_labels=2)
    MRMForPreTraining(config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MRMConfig)
    assert type(AutoModel.from_pretrained(tmp_path)) is MRMModel
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)) is MRMForPreTraining
    assert type(AutoModelForImageClassification.from_pretrained(tmp_path)) is MRMForImageClassification
    assert AutoConfig.for_model("mrm").__class__ is MRMConfig


def test_every_mrm_checkpoint_names_and_opens_as_every_mrm_model(tmp_path):
    """Whichever model saves it, the saved config names every MRM model and the code files lie beside it."""
    expected = {
        "AutoConfig": "configuration_mrm.MRMConfig",
        "AutoModel": "modeling_mrm.MRMModel",
        "AutoModelForPreTraining": "modeling_mrm.MRMForPreTraining",
        "AutoModelForImageClassification": "modeling_mrm.MRMForImageClassification",
        "AutoBackbone": "modeling_mrm.MRMBackbone",
    }
    for model_class in AUTO_MODEL_CLASSES.values():
        folder = tmp_path / model_class.__name__
        model_class(tiny_config(num_labels=2, feature_pyramid_rescales=None)).save_pretrained(folder)
        assert json.loads((folder / "config.json").read_text())["auto_map"] == expected
        assert {"configuration_mrm.py", "modeling_mrm.py"} <= {path.name for path in folder.iterdir()}
        config = AutoConfig.from_pretrained(folder)
        for auto_class, mrm_class in AUTO_MODEL_CLASSES.items():
            auto = getattr(transformers, auto_class)
            # AutoBackbone.from_pretrained takes a local folder for a timm name; from_config is its local path.
            loaded = auto.from_config(config) if auto is AutoBackbone else auto.from_pretrained(folder)
            assert type(loaded) is mrm_class, (model_class, auto_class)


def test_pretraining_checkpoint_loads_into_the_encoder_and_the_classifier(tmp_path):
    pretraining = MRMForPreTraining(tiny_config()).eval()
    pretraining.save_pretrained(tmp_path)
    encoder, info = MRMModel.from_pretrained(tmp_path, output_loading_info=True)
    # The pooling LayerNorm is absent from pre-training folders by design: not reported, initialised at (1, 0).
    assert not info["missing_keys"]
    assert torch.all(encoder.pooler.layernorm.weight == 1) and torch.all(encoder.pooler.layernorm.bias == 0)
    for key, value in encoder.state_dict().items():
        if not key.startswith("pooler."):
            assert torch.equal(value, pretraining.image_encoder.state_dict()[key]), key

    classifier, info = MRMForImageClassification.from_pretrained(tmp_path, num_labels=5, output_loading_info=True)
    assert set(info["missing_keys"]) == {
        "image_encoder.pooler.layernorm.weight",
        "image_encoder.pooler.layernorm.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert info["mismatched_keys"] == [] or not info["mismatched_keys"]
    torch.testing.assert_close(
        classifier.image_encoder.layers[1].mlp.fc2.weight, pretraining.image_encoder.layers[1].mlp.fc2.weight
    )
    # The published head initialisation: trunc_normal(std=2e-5), zero bias; fc_norm at (1, 0).
    assert classifier.classifier.weight.std() < 1e-4 and torch.all(classifier.classifier.bias == 0)
    assert torch.all(classifier.image_encoder.pooler.layernorm.weight == 1)
    assert classifier.image_encoder.embeddings.position_embeddings.requires_grad


def test_trust_remote_code_loads_without_the_package(tmp_path):
    config = tiny_config(num_labels=2)
    model = MRMForPreTraining(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    pixel_values = torch.randn(1, 3, 32, 32)
    torch.save(pixel_values, tmp_path / "pixels.pt")
    expected = MRMModel.from_pretrained(checkpoint).eval()(pixel_values).last_hidden_state
    torch.save(expected, tmp_path / "expected.pt")
    out = run_without_mrm_hf(
        f"""
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForPreTraining
path = {str(checkpoint)!r}
config = AutoConfig.from_pretrained(path, trust_remote_code=True)
encoder = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
pretraining = AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True)
classifier = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=True)
assert "mrm_hf" not in type(encoder).__module__, type(encoder).__module__
hidden = encoder(torch.load({str(tmp_path / "pixels.pt")!r})).last_hidden_state
torch.testing.assert_close(hidden, torch.load({str(tmp_path / "expected.pt")!r}), rtol=0, atol=0)
print(type(config).__name__, type(encoder).__name__, type(pretraining).__name__, type(classifier).__name__)
""",
        tmp_path,
    )
    assert out.split() == ["MRMConfig", "MRMModel", "MRMForPreTraining", "MRMForImageClassification"]


def test_hidden_states_and_attentions_are_captured():
    config = tiny_config()
    model = MRMModel(config).eval()
    model.set_attn_implementation("eager")
    out = model(torch.randn(2, 3, 32, 32), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert len(out.attentions) == config.num_hidden_layers
    assert out.attentions[0].shape == (2, config.num_attention_heads, 17, 17)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 17))
    # hidden_states[-1] is the last block's output, before the final LayerNorm that gives last_hidden_state.
    torch.testing.assert_close(model.layernorm(out.hidden_states[-1]), out.last_hidden_state)
    masked = model(torch.randn(2, 3, 32, 32), mask_ratio=0.5, output_hidden_states=True)
    assert masked.hidden_states[0].shape == (2, 1 + 8, config.hidden_size)
    assert MRMForPreTraining(config)(tiny_batch(config)[0]["pixel_values"], output_hidden_states=True).hidden_states


def test_pooler_output_is_the_mean_of_patch_tokens_then_layernorm():
    model = MRMModel(tiny_config()).eval()
    out = model(torch.randn(2, 3, 32, 32), output_hidden_states=True)
    torch.testing.assert_close(out.pooler_output, model.pooler.layernorm(out.hidden_states[-1][:, 1:].mean(1)))
    assert out.mask is None and out.last_hidden_state.shape == (2, 17, 32)


def test_interpolate_pos_encoding_runs_other_sizes():
    model = MRMModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="expected 32x32 images; found 48x64"):
        model(torch.randn(1, 3, 48, 64))
    out = model(torch.randn(1, 3, 48, 64), interpolate_pos_encoding=True)
    assert out.last_hidden_state.shape == (1, 1 + 6 * 8, 32)
    # At the native size the resampled table is the table itself.
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x, interpolate_pos_encoding=True).pooler_output, model(x).pooler_output)


def test_classifier_losses_follow_the_problem_type():
    torch.manual_seed(0)
    pixel_values = torch.randn(4, 3, 32, 32)
    multi = MRMForImageClassification(tiny_config(num_labels=3, problem_type="multi_label_classification")).eval()
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = multi(pixel_values, labels=targets)
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, targets.float()))
    with pytest.raises(ValueError, match=r"labels: expected multi-label targets of shape \(batch, num_labels\) = \(4, 3\); found \(4,\)"):
        multi(pixel_values, labels=torch.tensor([0, 1, 2, 0]))

    single = MRMForImageClassification(tiny_config(num_labels=3)).eval()
    out = single(pixel_values, labels=torch.tensor([0, 2, 1, 2]))
    assert single.config.problem_type == "single_label_classification"
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 2, 1, 2])))
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 3\); found \[0, 3, 1, 2\]"):
        single(pixel_values, labels=torch.tensor([0, 3, 1, 2]))

    # Integer 0/1 targets of shape (batch, num_labels) are multi-label, not class ids.
    inferred = MRMForImageClassification(tiny_config(num_labels=3)).eval()
    out = inferred(pixel_values, labels=targets)
    assert inferred.config.problem_type == "multi_label_classification"

    regression = MRMForImageClassification(tiny_config(num_labels=1)).eval()
    out = regression(pixel_values, labels=torch.tensor([0.5, 1.0, -1.0, 2.0]))
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(), torch.tensor([0.5, 1.0, -1.0, 2.0])))


def test_config_return_dict_false_gives_tuples_from_forward_and_the_doors():
    # The doors ask the encoder for its named output whatever the config says, and give tuples themselves.
    model = MRMForPreTraining(tiny_config(return_dict=False)).eval()
    batch, _ = tiny_batch(model.config)
    noise = torch.rand(2, model.config.num_patches)
    with torch.no_grad():
        as_tuple, named = model(**batch, noise=noise), model(**batch, noise=noise, return_dict=True)
        features = model.get_image_features(batch["pixel_values"])
        named_features = model.get_image_features(batch["pixel_values"], return_dict=True)
    assert isinstance(as_tuple, tuple) and isinstance(features, tuple)
    assert torch.equal(as_tuple[0], named.loss) and torch.equal(features[1], named_features.pooler_output)
