"""`python -m mrm_hf.timm_export`: an MRM encoder or classifier as timm's avg-pool ViT with fc_norm."""

import json

import pytest
import torch
from conftest import tiny_config

from mrm_hf import MRMForImageClassification, MRMForPreTraining, MRMModel
from mrm_hf.convert import ConversionError
from mrm_hf.processing_mrm import encoder_image_processor
from mrm_hf.timm_export import main, to_timm_state_dict


timm = pytest.importorskip("timm", reason="timm is the reference the export is checked against")


def randomized(model, seed):
    """Every weight random, LayerNorms included, so that a dropped or misplaced tensor shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def export(folder, output):
    assert main(["--checkpoint", str(folder), "--output-dir", str(output)]) == 0
    return timm.create_model(f"local-dir:{output}", pretrained=True).eval()


def test_exported_encoder_of_a_pretraining_folder_gives_the_same_features_in_timm(tmp_path):
    randomized(MRMForPreTraining(tiny_config()), seed=0).save_pretrained(tmp_path / "mrm")
    vit = export(tmp_path / "mrm", tmp_path / "timm")
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"] == "vit_base_patch16_224" and config["num_classes"] == 0
    assert (vit.global_pool, type(vit.norm).__name__) == ("avg", "Identity") and vit.fc_norm is not None

    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = MRMModel.from_pretrained(tmp_path / "mrm").eval()(pixel_values).pooler_output
        torch.testing.assert_close(vit(pixel_values), expected, atol=1e-5, rtol=1e-5)
    # timm's data config is the encoder's view: MRM's normalisation at the model's input size.
    data = timm.data.resolve_data_config({}, model=vit)
    assert data["input_size"] == (3, 32, 32) and tuple(data["mean"]) == (0.4978,) * 3 and tuple(data["std"]) == (0.2449,) * 3


def test_exported_classifier_gives_the_same_logits_and_labels_in_timm(tmp_path):
    model = randomized(MRMForImageClassification(tiny_config(num_labels=3)), seed=1)
    model.config.id2label = {0: "Atelectasis", 1: "Edema", 2: "Effusion"}
    model.save_pretrained(tmp_path / "mrm")
    encoder_image_processor(32).save_pretrained(tmp_path / "mrm")
    vit = export(tmp_path / "mrm", tmp_path / "timm")
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(pixel_values), model(pixel_values).logits, atol=1e-5, rtol=1e-5)
    assert vit.pretrained_cfg["label_names"] == ["Atelectasis", "Edema", "Effusion"]


def test_every_encoder_weight_has_its_place_in_timm():
    model = MRMForImageClassification(tiny_config(num_labels=2))
    converted = to_timm_state_dict(model.state_dict())
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
                            num_heads=4, mlp_ratio=2.0, global_pool="avg", fc_norm=True, num_classes=2)
    assert set(converted) == set(vit.state_dict())
    with pytest.raises(ConversionError, match=r"no place in timm's ViT: \['image_decoder.embed.weight'"):
        to_timm_state_dict({"image_decoder.embed.weight": torch.zeros(1)})


def test_a_layout_timm_cannot_build_is_refused_by_name(tmp_path, capsys):
    MRMModel(tiny_config(layer_norm_eps=1e-5, hidden_act="relu")).save_pretrained(tmp_path / "mrm")
    code = main(["--checkpoint", str(tmp_path / "mrm"), "--output-dir", str(tmp_path / "timm")])
    error = capsys.readouterr().err
    assert code == 2 and "This MRM layout: expected one that timm's ViT can build" in error
    assert "layer_norm_eps is 1e-05" in error and "hidden_act is 'relu'" in error
    assert not (tmp_path / "timm").exists()


def test_export_needs_an_mrm_folder(tmp_path, capsys):
    (tmp_path / "MRM.pth").write_bytes(b"")
    code = main(["--checkpoint", str(tmp_path / "MRM.pth"), "--output-dir", str(tmp_path / "timm")])
    error = capsys.readouterr().err
    assert code == 2, error
    assert "expected an MRM folder with config.json; found none there (convert a published .pth first" in error


def test_export_refuses_another_model_type_and_an_encoder_with_missing_weights(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "upernet"}))
    code = main(["--checkpoint", str(tmp_path / "other"), "--output-dir", str(tmp_path / "t1")])
    assert code == 2 and "found model_type 'upernet'" in capsys.readouterr().err

    MRMModel(tiny_config()).save_pretrained(tmp_path / "mrm")
    weights = load_file(tmp_path / "mrm" / "model.safetensors")
    removed = sorted(k for k in weights if k.startswith("layers.0."))[0]
    save_file({k: v for k, v in weights.items() if k != removed}, tmp_path / "mrm" / "model.safetensors",
              metadata={"format": "pt"})
    code = main(["--checkpoint", str(tmp_path / "mrm"), "--output-dir", str(tmp_path / "t2")])
    error = capsys.readouterr().err
    assert code == 2 and "expected every encoder weight in the folder; found" in error and removed in error
    assert not (tmp_path / "t2").exists()
