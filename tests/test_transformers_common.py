"""transformers' own common tests (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) run against MRM.

The mixins are the files of the installed transformers' own sdist, vendored per version in
`tests/transformers_common` (see its `__init__.py` for the licence, the stand-ins, which copy runs and how to vendor
another release). Where none fits the installed transformers, this module skips with one reason naming both versions,
and `.ci/run` fails on it. The testers follow transformers' ViT and
ViTMAE testers: tiny configs, and a fixed `noise` wherever the model masks, so that two forward passes of the same
inputs see the same patches.

Two model test classes, because the three models do not take the same pixels: `MRMModel` and
`MRMForImageClassification` read `image_size` images unmasked, `MRMForPreTraining` reads the `reconstruction_size`
view, masks it with `noise` and reads a report.

Skips (pytest -rs lists them with the mixins' own reasons):
- Needs a GPU or another accelerator: FlashAttention 2/3/4 and kernels tests, SDPA dispatch on flash, compile of
  SDPA/flash with masks, fp16/bf16 device tests, multi-accelerator and MPS tests, torch.compile for training (also
  text-only inputs), the image processor's torchvision compile.
- Needs a package not installed here: deepspeed, the `kernels` library.
- Does not apply to MRM:
  - token-embedding resizing (`test_resize_embeddings = False`; the encoder's input embedding is a Conv2d patch
    embedding, as ViT's) and position-embedding resizing (a fixed sin-cos table; `interpolate_pos_encoding` resamples);
  - RoPE, axial RoPE, sliding windows, caches, `inputs_embeds`, MoE experts and router logits, generation heads,
    tensor-parallel plans, composite sub-configs, legacy checkpoint conversions, `_keep_in_fp32_modules`: MRM has none;
  - image-processor backend equivalence and backend save/load: MRMImageProcessor has one (PIL) backend, and the
    equivalence test also reads images from the Hub; `test_new_models_require_torchvision_backend` (see its reason).
- Upstream conditions that skip for ViT too: no `_valid_processor_keys`/signature filter on `preprocess`, and
  SizeDict/tuple (not dict/list) processor attributes.
"""

import pickle
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import transformers
from conftest import run_without_mrm_hf
from torch import nn
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_PRETRAINING_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers_common import UNAVAILABLE, CommonTestsUnavailable, vendored_folder

from mrm_hf import MRMConfig, MRMForImageClassification, MRMForPreTraining, MRMImageProcessor, MRMModel


try:
    COMMON_TESTS = vendored_folder()
    from transformers_common.tests.test_configuration_common import ConfigTester
    from transformers_common.tests.test_image_processing_common import (
        ImageProcessingTester,
        ImageProcessingTestMixin,
        PostProcessSemanticSegmentationTestMixin,
    )
    from transformers_common.tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor
except CommonTestsUnavailable as unavailable:
    pytest.skip(str(unavailable), allow_module_level=True)
except ImportError as error:
    pytest.skip(
        f"{UNAVAILABLE}: transformers {transformers.__version__} is installed, and the copy vendored from "
        f"transformers {COMMON_TESTS.name} fails to import under it ({error}). Vendor this version's with "
        f"`python tests/transformers_common/refresh.py {transformers.__version__}`, or install {COMMON_TESTS.name}.",
        allow_module_level=True,
    )


class MRMModelTester:
    """Tiny MRM configs and inputs, as transformers' ViTMAEModelTester builds them."""

    def __init__(
        self,
        parent,
        pretraining: bool = False,
        batch_size=3,
        image_size=16,
        patch_size=4,
        reconstruction_size=32,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=20,
        report_vocab_size=50,
        report_hidden_size=16,
        report_num_hidden_layers=2,
        report_num_attention_heads=2,
        report_intermediate_size=20,
        report_length=7,
        mask_ratio=0.5,
        num_labels=3,
        is_training=True,
    ):
        self.parent = parent
        self.pretraining = pretraining
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.reconstruction_size = reconstruction_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.report_vocab_size = report_vocab_size
        self.report_hidden_size = report_hidden_size
        self.report_num_hidden_layers = report_num_hidden_layers
        self.report_num_attention_heads = report_num_attention_heads
        self.report_intermediate_size = report_intermediate_size
        self.report_length = report_length
        self.mask_ratio = mask_ratio
        self.num_labels = num_labels
        self.is_training = is_training

        self.num_patches = (image_size // patch_size) ** 2
        # The encoder's sequence: cls plus every patch, or plus the patches `noise` keeps in pre-training.
        visible = int(self.num_patches * (1 - mask_ratio)) if pretraining else self.num_patches
        self.seq_length = 1 + visible

    def get_config(self) -> MRMConfig:
        return MRMConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            reconstruction_size=self.reconstruction_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            decoder_hidden_size=self.decoder_hidden_size,
            decoder_num_hidden_layers=self.decoder_num_hidden_layers,
            decoder_num_attention_heads=self.decoder_num_attention_heads,
            decoder_intermediate_size=self.decoder_intermediate_size,
            report_vocab_size=self.report_vocab_size,
            report_hidden_size=self.report_hidden_size,
            report_num_hidden_layers=self.report_num_hidden_layers,
            report_num_attention_heads=self.report_num_attention_heads,
            report_intermediate_size=self.report_intermediate_size,
            report_max_position_embeddings=self.report_length + 3,
            mask_ratio=self.mask_ratio,
            num_labels=self.num_labels,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        if not self.pretraining:
            pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
            return config, {"pixel_values": pixel_values}
        size = self.reconstruction_size
        pixel_values = floats_tensor([self.batch_size, self.num_channels, size, size])
        # Fixed masking noise, as ViTMAE's tester passes: every forward pass of these inputs hides the same patches.
        generator = torch.Generator().manual_seed(2)
        noise = torch.rand(self.batch_size, self.num_patches, generator=generator)
        input_ids = ids_tensor([self.batch_size, self.report_length], self.report_vocab_size)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -2:] = 0  # one padded report, so that the padding mask reaches every attention kernel
        inputs = {"pixel_values": pixel_values, "noise": noise, "input_ids": input_ids, "attention_mask": attention_mask}
        return config, inputs


class MRMModelTesterMixin(ModelTesterMixin):
    """ModelTesterMixin as it runs for an in-tree model: MRM's classes sit in transformers' auto mappings."""

    # The patch embedding is a Conv2d, as ViT's: there is no token vocabulary to resize.
    test_resize_embeddings = False
    # The common test dates a model by its configuration file's copyright line, which MRM's lacks, and so would
    # skip MRM as an old model; `_init_weights` must initialise every weight, so run it.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The common tests choose per class by these name lists: no training test for the bare encoder (it has no
        # loss), class-id labels for the classifier. An in-tree model is listed there; MRM is listed for these tests.
        for mapping, name in (
            (MODEL_MAPPING_NAMES, "MRMModel"),
            (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, "MRMForImageClassification"),
            (MODEL_FOR_PRETRAINING_MAPPING_NAMES, "MRMForPreTraining"),
        ):
            cls.enterClassContext(mock.patch.dict(mapping, {"mrm": name}))

    def test_model_get_set_embeddings(self):
        # As ViT's test: the input embedding is the patch embedding, a Conv2d, not the nn.Embedding the common test
        # expects; an output embedding, where there is one, is a Linear.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            encoder = model if model_class is MRMModel else model.image_encoder
            self.assertIs(model.get_input_embeddings(), encoder.embeddings.patch_embeddings)
            output_embeddings = model.get_output_embeddings()
            self.assertTrue(output_embeddings is None or isinstance(output_embeddings, nn.Linear))


class MRMModelTest(MRMModelTesterMixin, unittest.TestCase):
    """The encoder and the classifier on unmasked `image_size` images."""

    all_model_classes = (MRMModel, MRMForImageClassification)

    def setUp(self):
        self.model_tester = MRMModelTester(self)
        self.config_tester = ConfigTester(self, config_class=MRMConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()


class MRMForPreTrainingTest(MRMModelTesterMixin, unittest.TestCase):
    """Pre-training on the high-resolution view, with fixed masking noise and a report."""

    all_model_classes = (MRMForPreTraining,)

    def setUp(self):
        self.model_tester = MRMModelTester(self, pretraining=True)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            # The masked-report targets: every other token predicted, the rest -100.
            labels = inputs_dict["input_ids"].clone()
            labels[:, ::2] = -100
            inputs_dict["labels"] = labels
        return inputs_dict

    def test_for_pretraining(self):
        # As the testers of transformers' pre-training heads (BERT's create_and_check_for_pretraining): labels add a
        # loss and leave the logits (batch, length, vocab); sparse_prediction alone gives the labelled rows.
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        inputs = self._prepare_for_class(inputs, MRMForPreTraining, return_labels=True)
        tester = self.model_tester
        patch_pixels = config.reconstruction_patch_size**2 * config.num_channels
        for sparse_prediction in (False, True):
            config.sparse_prediction = sparse_prediction
            model = MRMForPreTraining(config).eval()
            with torch.no_grad():
                outputs = model(**inputs)
            self.assertEqual(tuple(outputs.image_logits.shape), (tester.batch_size, tester.num_patches, patch_pixels))
            self.assertEqual(outputs.loss.ndim, 0)
            if sparse_prediction:
                expected = (int((inputs["labels"] != -100).sum()), tester.report_vocab_size)
            else:
                expected = (tester.batch_size, tester.report_length, tester.report_vocab_size)
            self.assertEqual(tuple(outputs.report_logits.shape), expected)


class MRMImageProcessingTester(ImageProcessingTester):
    """Small sizes for MRMImageProcessor (evaluation mode: resize the short side, then center crop)."""

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"shortest_edge": 20})
        kwargs.setdefault("crop_size", {"height": 18, "width": 18})
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_center_crop", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.25, 0.25, 0.25])
        super().__init__(parent, batch_size=3, min_resolution=20, max_resolution=40, **kwargs)

    def _get_image_processing_classes(self):
        # transformers finds a model's processors in its auto mapping by the test folder's name; MRM's is its own.
        return {"pil": MRMImageProcessor}

    def prepare_post_process_semantic_segmentation_inputs(self):
        # The common tester reads a (height, width) `size`; MRM's evaluation view resizes the short side, then crops.
        num_labels, height, width = 2, self.crop_size["height"], self.crop_size["width"]
        logits = torch.randn(self.batch_size, num_labels, height, width)
        return {"outputs": SemanticSegmenterOutput(logits=logits)}, {"num_labels": num_labels, "height": height,
                                                                      "width": width}


class MRMImageProcessingTest(ImageProcessingTestMixin, PostProcessSemanticSegmentationTestMixin, unittest.TestCase):
    image_processor_tester_class = MRMImageProcessingTester

    def test_call_numpy_4_channels(self):
        # The common test expects any channel count to pass through. MRM reads every input as a grayscale radiograph
        # and gives the 3 identical channels its encoder reads, so a 4-channel (RGBA) image gives 3 channels too.
        image_processor = MRMImageProcessor(**self.image_processor_dict)
        self.image_processor_tester.num_channels = 4
        images = self.image_processor_tester.prepare_image_inputs(equal_resolution=False, numpify=True)
        pixel_values = image_processor(images, input_data_format="channels_last", return_tensors="pt").pixel_values
        self.assertEqual(tuple(pixel_values.shape), (self.image_processor_tester.batch_size, 3, 18, 18))
        torch.testing.assert_close(pixel_values[:, 0], pixel_values[:, 2])
        # The alpha channel is dropped, not averaged in: the same image without it gives the same pixels.
        rgb = image_processor([image[..., :3] for image in images], return_tensors="pt").pixel_values
        torch.testing.assert_close(pixel_values, rgb)

    def test_image_processor_from_dict_with_mrm_kwargs_has_attributes(self):
        # The common test checks `do_convert_rgb`; the same check on the keywords that are MRM's own.
        for kwargs in ({"do_center_crop": False}, {"do_normalize": False, "resample": 3}, {"mode": "pretraining"}):
            image_processor = MRMImageProcessor.from_dict(self.image_processor_dict, **kwargs)
            self._assert_has_attributes(image_processor, kwargs)

    def test_pil_can_run_without_torchvision(self):
        # The common test (marked slow there) loads the saved processor with AutoImageProcessor in a Python where
        # torchvision cannot be imported. MRM's processor is remote code, so here it also runs without mrm_hf and with
        # trust_remote_code=True: the shipped image_processing_mrm.py must stand alone, torchvision-free.
        image_processor = MRMImageProcessor(**self.image_processor_dict)
        inputs = self.image_processor_tester.prepare_processor_inputs(equal_resolution=False)
        expected = image_processor(**inputs, return_tensors=None).data
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            image_processor.save_pretrained(tmp / "processor")
            (tmp / "inputs.pkl").write_bytes(pickle.dumps(inputs))
            run_without_mrm_hf(
                textwrap.dedent(
                    """
                    import pickle
                    sys.modules["torchvision"] = None  # `import torchvision` raises ImportError
                    from transformers import AutoImageProcessor

                    processor = AutoImageProcessor.from_pretrained("processor", backend="pil", trust_remote_code=True)
                    assert type(processor).__name__ == "MRMImageProcessor", type(processor)
                    with open("inputs.pkl", "rb") as f:
                        outputs = processor(**pickle.load(f), return_tensors=None)
                    with open("outputs.pkl", "wb") as f:
                        pickle.dump(outputs.data, f)
                    """
                ),
                tmp,
            )
            outputs = pickle.loads((tmp / "outputs.pkl").read_bytes())
        np.testing.assert_equal(outputs, expected)

    @unittest.skip(
        "Does not apply: transformers' rule that in-tree image processors added after 2025-09 have a torchvision "
        "backend. MRMImageProcessor is PIL-only on purpose: it reads any bit depth and resizes with PIL as the "
        "published preprocessing did, and torchvision stays out of mrm-hf's required dependencies."
    )
    def test_new_models_require_torchvision_backend(self):
        pass
