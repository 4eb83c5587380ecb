"""Configuration of MRM (Masked Record Modeling, Zhou et al., ICLR 2023).

The defaults are the published model: a ViT-B/16 image encoder on 224 px inputs, an MAE decoder that rebuilds the
masked patches at 448 px, and a 6-layer BERT that rebuilds the masked report tokens with the image's global feature
added to every token.
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, UperNetConfig
from transformers.backbone_utils import BackboneConfigMixin


def published_out_indices(num_blocks: int) -> list[int]:
    """The blocks the published segmentation backbone reads, (3, 5, 7, 11) of 12, at the same depths of any encoder.

    Encoders of fewer than 4 blocks give their last block only (transformers' default); the four-map neck then asks
    for explicit `out_indices`.
    """
    if num_blocks < 4:
        return [num_blocks - 1] if num_blocks > 0 else []
    indices = [num_blocks * k // 12 - 1 for k in (4, 6, 8, 12)]
    if len(set(indices)) < 4 or min(indices) < 0:
        indices = list(range(num_blocks - 4, num_blocks))
    return indices


def check_fraction(name: str, value: float) -> None:
    """Refuse a ratio or probability outside [0, 1), naming it: at 1 nothing would be kept."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1); found {value}.")


@strict
class MRMConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Image branch (encoder; `MRMModel` is this alone):
        image_size: side of the encoder's input, in pixels.
        patch_size: side of a square patch of the encoder's input.
        num_channels: channels of the input image.
        hidden_size: width of the encoder.
        num_hidden_layers: encoder blocks.
        num_attention_heads: attention heads per encoder block.
        intermediate_size: width of the encoder's MLP.
        hidden_act: activation of the encoder's and decoder's MLP.
        qkv_bias: whether the query, key and value projections have a bias.
        layer_norm_eps: epsilon of the encoder's and decoder's LayerNorms.
        hidden_dropout_prob: dropout on the outputs of the encoder's attention and MLP.
        attention_probs_dropout_prob: dropout on the encoder's attention probabilities.
        drop_path_rate: stochastic depth, rising linearly over the encoder's blocks (0.1 in the published fine-tuning).
        initializer_range: std of the normal initialisation of the cls/mask tokens and the report embeddings.
        mask_ratio: fraction of the patches hidden from the encoder during pre-training.

    Image branch (decoder, pre-training only):
        decoder_hidden_size: width of the decoder.
        decoder_num_hidden_layers: decoder blocks.
        decoder_num_attention_heads: attention heads per decoder block.
        decoder_intermediate_size: width of the decoder's MLP.
        reconstruction_size: side of the image the decoder reconstructs; a whole multiple of `image_size`, by default
            twice it (the published 448 for 224). The encoder sees it resized to `image_size`, so each encoder patch
            predicts a (patch_size * reconstruction_size / image_size)^2 patch of it.
        downsample_antialias: antialias the bicubic resize to `image_size`. The published code did not (torchvision
            0.9 on tensors), so False reproduces it.
        norm_pix_loss: normalise each target patch by its own mean and (unbiased) variance.

    Report branch (pre-training only; a BERT masked-language model):
        use_report_branch: build the report branch and the fusion; False pre-trains on images alone (the image
            branch: MAE with high-resolution targets), with no report parameters at all.
        report_vocab_size: size of the report vocabulary.
        report_hidden_size: width of the report encoder.
        report_num_hidden_layers: report encoder layers.
        report_num_attention_heads: attention heads per report layer.
        report_intermediate_size: width of the report encoder's feed-forward layers.
        report_hidden_act: activation of the report encoder and of its prediction head.
        report_hidden_dropout_prob: dropout in the report embeddings and layers.
        report_attention_probs_dropout_prob: dropout on the report attention probabilities.
        report_max_position_embeddings: the longest report, in tokens.
        report_type_vocab_size: token types of the report embeddings.
        report_layer_norm_eps: epsilon of the report LayerNorms.
        pad_token_id: id of [PAD] in the report vocabulary.
        sparse_prediction: with `labels`, run the report head (a projection to the whole vocabulary) only on the
            positions whose label is not -100, and return `report_logits` as (labelled positions, vocab), the rows
            of `labels[labels != -100]` in order, as ModernBERT's `sparse_prediction`. The loss is the same; the
            pre-training scripts turn it on, as it saves the head's work on the unmasked tokens. Off (the default),
            `report_logits` is (batch, report length, vocab) as every transformers masked-LM head gives it.

    Losses:
        image_loss_weight: weight of the masked image modelling loss in `loss`.
        report_loss_weight: weight of the masked report modelling loss in `loss`.

    Backbone (`MRMBackbone`, for dense tasks such as segmentation with UperNet):
        out_indices: encoder blocks whose outputs become feature maps, counted from 0 as the published segmentation
            config does; default (3, 5, 7, 11) for 12 blocks (the same depths for other encoders). Stage `stage{i+1}`
            is the output of block i (`out_features` names them).
        feature_pyramid_rescales: the published Feature2Pyramid neck, one factor per feature map (4: two 2x
            transposed convolutions, 2: one, 1: as is, 0.5: 2x2 max-pooling), so that the stride-16 maps of the ViT
            reach UperNet at strides 4, 8, 16 and 32; None for the plain stride-16 maps.
    """

    model_type = "mrm"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    initializer_range: float = 0.02
    mask_ratio: float = 0.75

    decoder_hidden_size: int = 768
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 6
    decoder_intermediate_size: int = 3072
    reconstruction_size: int | None = None
    downsample_antialias: bool = False
    norm_pix_loss: bool = True

    use_report_branch: bool = True
    report_vocab_size: int = 30000
    report_hidden_size: int = 384
    report_num_hidden_layers: int = 6
    report_num_attention_heads: int = 6
    report_intermediate_size: int = 1536
    report_hidden_act: str = "gelu"
    report_hidden_dropout_prob: float | int = 0.1
    report_attention_probs_dropout_prob: float | int = 0.1
    report_max_position_embeddings: int = 100
    report_type_vocab_size: int = 2
    report_layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    sparse_prediction: bool = False

    image_loss_weight: float | int = 1.0
    report_loss_weight: float | int = 1.0

    # The published report head has its own output layer, not tied to the word embeddings.
    tie_word_embeddings: bool = False

    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None
    feature_pyramid_rescales: list[float | int] | tuple[float | int, ...] | None = (4, 2, 1, 0.5)

    def __post_init__(self, **kwargs):
        if self.reconstruction_size is None:  # the published ratio
            self.reconstruction_size = 2 * self.image_size
        kwargs.pop("stage_names", None)  # saved by older configs; they follow num_hidden_layers
        out_indices, out_features = kwargs.pop("out_indices", None), kwargs.pop("out_features", None)
        if out_indices is not None or out_features is not None:
            self.set_output_features_output_indices(out_features=out_features, out_indices=out_indices)
        super().__post_init__(**kwargs)

    # The backbone's stages and default outputs follow the depth, so that a config resized after construction
    # (`update_from_string("num_hidden_layers=4")`) stays valid; explicit out_features/out_indices are kept as given.
    @property
    def stage_names(self) -> list[str]:
        return [f"stage{block + 1}" for block in range(max(self.num_hidden_layers, 0))]

    @property
    def out_indices(self) -> list[int]:
        if self._out_indices is None and self._out_features is None:
            return published_out_indices(self.num_hidden_layers)
        return self._out_indices

    @out_indices.setter
    def out_indices(self, out_indices):
        self.set_output_features_output_indices(out_features=None, out_indices=list(out_indices))

    @property
    def out_features(self) -> list[str]:
        if self._out_indices is None and self._out_features is None:
            return [self.stage_names[index] for index in self.out_indices]
        return self._out_features

    @out_features.setter
    def out_features(self, out_features):
        self.set_output_features_output_indices(out_features=list(out_features), out_indices=None)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def reconstruction_patch_size(self) -> int:
        """Side of the target patch that one encoder patch predicts."""
        return self.patch_size * self.reconstruction_size // self.image_size

    def validate_architecture(self):
        """Reject sizes the model cannot be built with, naming the values found."""
        for prefix, width, heads in (
            ("", self.hidden_size, self.num_attention_heads),
            ("decoder_", self.decoder_hidden_size, self.decoder_num_attention_heads),
            ("report_", self.report_hidden_size, self.report_num_attention_heads),
        ):
            if heads <= 0 or width % heads != 0:
                raise ValueError(
                    f"{prefix}hidden_size: expected a multiple of {prefix}num_attention_heads ({heads}); found {width}."
                )
        for name in ("hidden_size", "decoder_hidden_size"):
            if getattr(self, name) % 4 != 0:
                raise ValueError(
                    f"{name}: expected a multiple of 4 (the 2-D sin-cos position table gives a quarter of the width "
                    f"to each of sin and cos of each axis); found {getattr(self, name)}."
                )
        for name in ("image_size", "patch_size", "num_channels", "reconstruction_size", "report_vocab_size",
                     "report_max_position_embeddings", "num_hidden_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive number; found {getattr(self, name)}.")
        check_fraction("mask_ratio", self.mask_ratio)
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size: expected a multiple of patch_size ({self.patch_size}); found {self.image_size}."
            )
        if self.reconstruction_size % self.image_size != 0:
            raise ValueError(
                f"reconstruction_size: expected a whole multiple of image_size ({self.image_size}), e.g. "
                f"{2 * self.image_size}; found {self.reconstruction_size}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate",
                     "report_hidden_dropout_prob", "report_attention_probs_dropout_prob"):
            check_fraction(name, getattr(self, name))
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.report_vocab_size:
            raise ValueError(
                f"pad_token_id: expected an id of the report vocabulary (0 to {self.report_vocab_size - 1}); "
                f"found {self.pad_token_id}."
            )


MRMConfig.register_for_auto_class()


class MRMUperNetConfig(UperNetConfig):
    """`UperNetConfig` on an MRM backbone, as a segmentation folder saves it (model_type "upernet").

    transformers reads a saved `backbone_config` through `AutoConfig`'s table of model types, where "mrm" appears only
    after `import mrm_hf`; this class reads it as `MRMConfig` itself, so the folder opens with `trust_remote_code`
    where mrm_hf is not installed.
    """

    def __post_init__(self, **kwargs):
        if isinstance(self.backbone_config, dict) and self.backbone_config.get("model_type") == MRMConfig.model_type:
            self.backbone_config = MRMConfig.from_dict(self.backbone_config)
        super().__post_init__(**kwargs)


MRMUperNetConfig.register_for_auto_class()

__all__ = ["MRMConfig", "MRMUperNetConfig", "check_fraction", "published_out_indices"]
