import json

import pytest
import torch
from conftest import tiny_config
from published_reference import PublishedMRM, make_published_checkpoint, published_classifier, randomize_

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMModel
from mrm_hf.convert import ConversionError, build_model, convert_state_dict, detect_kind, load_checkpoint, main


TINY_REFERENCE = dict(
    img_size=32,
    patch_size=8,
    embed_dim=32,
    depth=2,
    num_heads=4,
    decoder_embed_dim=32,
    decoder_depth=1,
    decoder_num_heads=4,
    bert_vocab_size=60,
    bert_hidden_size=16,
    bert_layers=2,
    bert_heads=2,
    bert_intermediate_size=32,
    bert_max_position=12,
)


def assert_relative_close(actual, expected, rel):
    scale = expected.abs().max().clamp(min=1e-12)
    error = (actual - expected).abs().max() / scale
    assert error <= rel, f"max relative error {error:.2e} > {rel:.0e}"


def tiny_reference(seed=0):
    return randomize_(PublishedMRM(**TINY_REFERENCE), seed).eval()


def write_tiny_config(path):
    path.write_text(json.dumps(tiny_config().to_dict()))
    return str(path)


def test_converted_classifier_matches_timm(tmp_path):
    torch.manual_seed(0)
    reference = randomize_(published_classifier(num_classes=14), seed=1).eval()
    torch.save({"model": reference.state_dict()}, tmp_path / "finetuned.pth")
    assert main(["--checkpoint", str(tmp_path / "finetuned.pth"), "--output-dir", str(tmp_path / "hf")]) == 0

    model = MRMForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert model.config.num_labels == 14 and model.config.problem_type == "multi_label_classification"
    pixel_values = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        expected = reference(pixel_values)
        actual = model(pixel_values).logits
    assert_relative_close(actual, expected, 1e-5)


def test_converted_pretraining_matches_the_published_computation(tmp_path):
    torch.manual_seed(0)
    reference = randomize_(PublishedMRM(), seed=2).eval()
    make_published_checkpoint(tmp_path / "MRM.pth", reference, position_ids=True)
    assert main(["--checkpoint", str(tmp_path / "MRM.pth"), "--output-dir", str(tmp_path / "hf")]) == 0
    model = MRMForPreTraining.from_pretrained(tmp_path / "hf").eval()

    pixel_values = torch.randn(2, 3, 448, 448)
    ids = torch.randint(4, 30000, (2, 100))
    ids[:, 0] = 2
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 60:] = 0
    ids[attention_mask == 0] = 0
    masked_ids = torch.where(torch.rand(ids.shape) < 0.5, torch.full_like(ids, 3), ids)
    noise = torch.rand(2, 196)
    with torch.no_grad():
        expected = reference(pixel_values, masked_ids, attention_mask, labels=ids, noise=noise)
        actual = model(pixel_values, input_ids=masked_ids, attention_mask=attention_mask, labels=ids, noise=noise)
    assert torch.equal(actual.mask, expected["mask"])
    assert_relative_close(actual.image_logits, expected["pred_img"], 1e-4)
    assert_relative_close(actual.report_logits, expected["report_logits"], 1e-4)
    assert_relative_close(actual.image_loss, expected["loss_img"], 1e-4)
    assert_relative_close(actual.report_loss, expected["loss_report"], 1e-4)


def test_converted_mae_encoder_matches_the_reference_encoder(tmp_path):
    reference = tiny_reference(seed=3)
    encoder_keys = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")
    state_dict = {k: v for k, v in reference.state_dict().items() if k.startswith(encoder_keys)}
    assert detect_kind(state_dict) == "encoder"
    torch.save({"model": state_dict}, tmp_path / "mae_pretrain_vit_base.pth")
    code = main(
        ["--checkpoint", str(tmp_path / "mae_pretrain_vit_base.pth"), "--output-dir", str(tmp_path / "hf"),
         "--config", write_tiny_config(tmp_path / "tiny.json")]
    )  # fmt: skip
    assert code == 0
    model = MRMModel.from_pretrained(tmp_path / "hf").eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    in_order = torch.arange(16.0).expand(2, -1)  # noise that keeps every patch in place
    with torch.no_grad():
        expected, _, _ = reference.forward_encoder(pixel_values, mask_ratio=0.0, noise=in_order)
        actual = model(pixel_values).last_hidden_state
    assert_relative_close(actual, expected, 1e-5)


def test_pretraining_checkpoint_converts_from_every_file_format(tmp_path):
    from safetensors.torch import save_file

    reference = tiny_reference()
    state_dict = reference.state_dict()
    # safetensors cannot hold the shared MLM bias twice: store copies, as a re-saved checkpoint would.
    copies = {k: v.clone().contiguous() for k, v in state_dict.items()}
    save_file(copies, str(tmp_path / "mrm.safetensors"))
    torch.save(state_dict, tmp_path / "bare.bin")
    torch.save({"model": {f"module.{k}": v for k, v in state_dict.items()}}, tmp_path / "ddp.pth")
    for name in ("mrm.safetensors", "bare.bin", "ddp.pth"):
        loaded = load_checkpoint(tmp_path / name)
        assert detect_kind(loaded) == "pretraining"
        model = build_model(loaded, config=tiny_config())
        assert torch.equal(
            model.report_branch.layers[1].attention.qkv.weight[:16],
            state_dict["bert_encoder.model.bert.encoder.layer.1.attention.self.query.weight"],
        )


def test_converter_keeps_the_published_initial_head_layout():
    reference = tiny_reference()
    converted = convert_state_dict(reference.state_dict(), "pretraining")
    assert torch.equal(converted["fusion.projection.weight"], reference.bert_mlp.weight)
    assert torch.equal(converted["image_decoder.position_embeddings"], reference.decoder_pos_embed)
    assert not any("pooler" in k for k in converted)  # BERT's unused pooler is dropped


def run_cli(tmp_path, state_dict, *extra):
    torch.save({"model": state_dict}, tmp_path / "broken.pth")
    out = tmp_path / "out"
    code = main(["--checkpoint", str(tmp_path / "broken.pth"), "--output-dir", str(out), *extra])
    return code, out


def test_converter_names_a_key_it_cannot_place_and_writes_nothing(tmp_path, capsys):
    state_dict = tiny_reference().state_dict()
    state_dict["blocks.0.attn.relative_position_bias_table"] = torch.zeros(3)
    state_dict["decoder_blocks.0.ls1.gamma"] = torch.zeros(3)
    code, out = run_cli(tmp_path, state_dict, "--config", write_tiny_config(tmp_path / "tiny.json"))
    assert code == 2 and not out.exists()
    error = capsys.readouterr().err
    assert "blocks.0.attn.relative_position_bias_table" in error and "decoder_blocks.0.ls1.gamma" in error


def test_converter_names_missing_required_keys(tmp_path, capsys):
    state_dict = tiny_reference().state_dict()
    del state_dict["blocks.1.attn.proj.weight"]
    del state_dict["bert_encoder.model.bert.encoder.layer.0.attention.self.key.bias"]
    code, out = run_cli(tmp_path, state_dict, "--config", write_tiny_config(tmp_path / "tiny.json"))
    assert code == 2 and not out.exists()
    error = capsys.readouterr().err
    assert "image_encoder.layers.1.attention.proj.weight" in error
    # The query and value biases of that layer cannot be fused without the key bias: they are named too.
    assert "bert_encoder.model.bert.encoder.layer.0.attention.self.query.bias" in error


def test_converter_names_shape_mismatches(tmp_path, capsys):
    state_dict = tiny_reference().state_dict()
    state_dict["blocks.0.mlp.fc2.weight"] = torch.zeros(32, 129)  # fc1 says the MLP is 128 wide
    code, out = run_cli(tmp_path, state_dict, "--config", write_tiny_config(tmp_path / "tiny.json"))
    assert code == 2 and not out.exists()
    assert "image_encoder.layers.0.mlp.fc2.weight: checkpoint (32, 129), model (32, 128)" in capsys.readouterr().err


def test_converter_refuses_inconsistent_published_quirks():
    state_dict = tiny_reference().state_dict()
    state_dict["bert_encoder.model.cls.predictions.decoder.bias"] = torch.ones(60)
    with pytest.raises(ConversionError, match="expected one tensor, as in the published model; found two that differ"):
        convert_state_dict(state_dict, "pretraining")
    state_dict = tiny_reference().state_dict()
    state_dict["bert_encoder.model.bert.embeddings.position_ids"] = torch.arange(12).flip(0)[None]
    with pytest.raises(ConversionError, match=r"expected 0, 1, 2, \.\.\. as in a standard BERT; found \[11, 10,"):
        convert_state_dict(state_dict, "pretraining")


def test_converter_refuses_arbitrary_pickled_objects(tmp_path, capsys):
    torch.save({"model": tiny_reference().state_dict(), "hook": ConversionError("pickled object")}, tmp_path / "x.pth")
    assert main(["--checkpoint", str(tmp_path / "x.pth"), "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "mrm_hf.convert.ConversionError" in error and "tmp_path" not in error and not (tmp_path / "out").exists()
    assert str(tmp_path / "x.pth") in error and "weights_only` set to `False" not in error and "False" not in error


def test_converter_names_every_unplaced_and_every_missing_key_in_one_message(tmp_path, capsys):
    state_dict = tiny_reference().state_dict()
    removed = [k for k in state_dict if k.startswith("blocks.0.")]  # the layer the sizes are read from first
    for key in removed:
        del state_dict[key]
    del state_dict["decoder_embed.weight"]
    state_dict["blocks.1.attn.rel_pos"] = torch.zeros(3)
    code, out = run_cli(tmp_path, state_dict, "--config", write_tiny_config(tmp_path / "tiny.json"))
    assert code == 2 and not out.exists()
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert "blocks.1.attn.rel_pos" in error and "image_decoder.embed.weight" in error
    for key in removed:  # every one of them, under its converted name
        converted = key.replace("blocks.0.", "image_encoder.layers.0.").replace("norm1", "layernorm_before")
        converted = converted.replace("norm2", "layernorm_after").replace("attn.", "attention.")
        assert converted in error, converted


def test_converter_reports_unreadable_files_by_name_without_unsafe_advice(tmp_path, capsys):
    import pickle

    torch.save(tiny_reference().state_dict(), tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    files = {
        "notes.pth": b"this is not a checkpoint\n",
        "empty.pth": b"",
        "truncated.pth": data[: len(data) // 2],
        "plain.pkl": pickle.dumps({"weights": [1.0, 2.0]}, protocol=4),
        "corrupt.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        assert main(["--checkpoint", str(tmp_path / name), "--output-dir", str(tmp_path / "out")]) == 2, name
        error = capsys.readouterr().err
        assert error.startswith(f"error: ") and str(tmp_path / name) in error, error
        assert "weights_only" not in error and "Traceback" not in error and len(error.strip().splitlines()) == 1, error
        assert not (tmp_path / "out").exists()
    expected = {"notes.pth": "neither a torch.save archive nor a pickle (it starts with b'this is not a ch')",
                "empty.pth": "the file is empty", "plain.pkl": "Unsupported operand",
                "corrupt.safetensors": "expected a readable safetensors file"}  # fmt: skip
    for name, text in expected.items():
        assert main(["--checkpoint", str(tmp_path / name), "--output-dir", str(tmp_path / "out")]) == 2
        assert text in capsys.readouterr().err, name
    # The legacy (pre-zip) torch.save format cannot be memory-mapped, but converts.
    torch.save(tiny_reference().state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    config = write_tiny_config(tmp_path / "tiny.json")
    assert main(["--checkpoint", str(tmp_path / "legacy.pth"), "--config", config, "--output-dir", str(tmp_path / "legacy")]) == 0


def test_converter_config_refuses_unknown_keys_and_bad_json_naming_the_file(tmp_path, capsys):
    torch.save(tiny_reference().state_dict(), tmp_path / "mrm.pth")
    values = tiny_config().to_dict()
    values["num_attention_head"] = values.pop("num_attention_heads")  # misspelt: would silently build 12 heads
    cases = {
        "misspelt.json": (json.dumps(values), ["'num_attention_head' (did you mean 'num_attention_heads'?)"]),
        "broken.json": ('{"hidden_size": 32,', ["expected valid JSON"]),
        "list.json": ("[1, 2]", ["expected a JSON object", "found a list"]),
        "other.json": (json.dumps({"model_type": "vit"}), ["expected model_type 'mrm'", "found model_type 'vit'"]),
        "invalid.json": (json.dumps({"hidden_size": 30, "num_attention_heads": 4}), ["expected values that make a valid MRMConfig"]),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        code = main(["--checkpoint", str(tmp_path / "mrm.pth"), "--config", str(tmp_path / name), "--output-dir",
                     str(tmp_path / "out")])  # fmt: skip
        error = capsys.readouterr().err
        assert code == 2 and not (tmp_path / "out").exists(), error
        assert f"--config {tmp_path / name}" in error and all(part in error for part in expected), error


def test_converter_warns_about_nonfinite_weights(tmp_path, caplog):
    state_dict = tiny_reference().state_dict()
    state_dict["blocks.1.mlp.fc2.weight"][0, 0] = float("nan")
    state_dict["decoder_pred.bias"][3] = float("inf")
    torch.save(state_dict, tmp_path / "nan.pth")
    config = write_tiny_config(tmp_path / "tiny.json")
    with caplog.at_level("WARNING", logger="mrm_hf.convert"):
        assert main(["--checkpoint", str(tmp_path / "nan.pth"), "--config", config, "--output-dir", str(tmp_path / "o")]) == 0
    assert "2 tensor(s)" in caplog.text and str(tmp_path / "nan.pth") in caplog.text
    assert "blocks.1.mlp.fc2.weight" in caplog.text and "decoder_pred.bias" in caplog.text


def test_converter_rejects_a_non_vit_checkpoint_and_an_occupied_output(tmp_path, capsys):
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "resnet.pth")
    assert main(["--checkpoint", str(tmp_path / "resnet.pth"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "Not a published MRM/MAE ViT checkpoint" in capsys.readouterr().err
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("user data")
    reference = published_classifier(num_classes=2, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4)
    torch.save(reference.state_dict(), tmp_path / "cls.pth")
    assert main(["--checkpoint", str(tmp_path / "cls.pth"), "--output-dir", str(tmp_path / "occupied")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_classifier_label_names_are_checked_and_stored(tmp_path, capsys):
    reference = published_classifier(num_classes=2, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4)
    torch.save(reference.state_dict(), tmp_path / "cls.pth")
    config = write_tiny_config(tmp_path / "tiny.json")
    args = ["--checkpoint", str(tmp_path / "cls.pth"), "--config", config]
    assert main([*args, "--output-dir", str(tmp_path / "bad"), "--label-names", "a,b,c"]) == 2
    assert "expected one per output of the checkpoint (2 outputs); found 3" in capsys.readouterr().err
    assert main([*args, "--output-dir", str(tmp_path / "good"), "--label-names", "COVID-19, other"]) == 0
    model = MRMForImageClassification.from_pretrained(tmp_path / "good")
    assert model.config.id2label == {0: "COVID-19", 1: "other"}


def tiny_report_tokenizer(folder):
    """A report tokenizer that fits the tiny reference's 60-token vocabulary, saved in `folder`."""
    from mrm_hf.tokenization_mrm import train_report_tokenizer

    tokenizer = train_report_tokenizer(["no pleural effusion", "small left effusion"] * 3, vocab_size=50)
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_converted_folder_gives_the_encoders_features_through_the_pipeline(tmp_path):
    from PIL import Image
    from transformers import AutoProcessor, pipeline

    from mrm_hf import MRMProcessor

    make_published_checkpoint(tmp_path / "MRM.pth", tiny_reference(seed=4))
    tiny_report_tokenizer(tmp_path / "tokenizer")
    assert main(["--checkpoint", str(tmp_path / "MRM.pth"), "--output-dir", str(tmp_path / "hf"),
                 "--config", write_tiny_config(tmp_path / "tiny.json"), "--tokenizer", str(tmp_path / "tokenizer")]) == 0

    image = Image.effect_noise((50, 40), 60)
    features = pipeline("image-feature-extraction", model=str(tmp_path / "hf"))(image, return_tensors=True)
    processor = AutoProcessor.from_pretrained(tmp_path / "hf")
    assert isinstance(processor, MRMProcessor) and processor.reconstruction_size == 64
    encoder = MRMModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        expected = encoder(**processor(images=image, return_tensors="pt")).last_hidden_state
    assert features.shape == (1, 17, 32)
    torch.testing.assert_close(features, expected)
    record = processor(images=image, text="no pleural [MASK]", return_tensors="pt")
    pretraining = MRMForPreTraining.from_pretrained(tmp_path / "hf").eval()
    assert pretraining(**record).report_logits.shape == (1, 4, 60)


def test_converted_folder_without_tokenizer_holds_the_encoders_image_processor(tmp_path):
    from transformers import AutoImageProcessor

    make_published_checkpoint(tmp_path / "MRM.pth", tiny_reference(seed=5))
    config = write_tiny_config(tmp_path / "tiny.json")
    assert main(["--checkpoint", str(tmp_path / "MRM.pth"), "--output-dir", str(tmp_path / "hf"), "--config", config]) == 0
    image_processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert image_processor.crop_size == {"height": 32, "width": 32} and image_processor.mode == "evaluation"


def test_converter_refuses_a_tokenizer_larger_than_the_report_vocabulary(tmp_path, capsys):
    from mrm_hf.tokenization_mrm import train_report_tokenizer

    train_report_tokenizer([f"word{i} effusion opacity" for i in range(200)], vocab_size=120).save_pretrained(
        tmp_path / "big"
    )
    make_published_checkpoint(tmp_path / "MRM.pth", tiny_reference(seed=6))
    code = main(["--checkpoint", str(tmp_path / "MRM.pth"), "--output-dir", str(tmp_path / "hf"),
                 "--config", write_tiny_config(tmp_path / "tiny.json"), "--tokenizer", str(tmp_path / "big")])
    assert code == 2 and "expected at most 60 tokens (the checkpoint's report vocabulary); found " in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
