"""MRM: Masked Record Modeling (Zhou et al., ICLR 2023, arXiv 2301.13155).

A ViT encoder sees a low-resolution view of a chest X-ray with 75% of its patches masked. Two branches learn from it
in the same step:
- the image branch: an MAE decoder reconstructs the masked patches at twice the input resolution (`image_loss`);
- the report branch: a BERT reconstructs the masked report tokens, with the image's global feature (the mean of the
  visible patch tokens, projected by the `fusion`) added to every token embedding (`report_loss`).

The file reads in the order the data flows: outputs, the encoder's parts, the image decoder, the fusion, the report
branch, then the models. It imports nothing from the rest of `mrm_hf`, so `save_pretrained` can ship it for
`trust_remote_code`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.models.upernet import modeling_upernet
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_mrm import MRMConfig, MRMUperNetConfig, check_fraction


@dataclass
class MRMModelOutput(ModelOutput):
    """Output of the image encoder.

    last_hidden_state: (batch, 1 + visible patches, hidden) tokens after the final LayerNorm, cls first (the
        classifier's encoder has no final LayerNorm: its head reads the pooled output only).
    pooler_output: (batch, hidden) mean of the patch tokens (cls excluded) before the final LayerNorm, then LayerNorm:
        the pooling of the published fine-tuning (timm `global_pool="avg"` with `fc_norm`).
    mask: (batch, num_patches) 1 where a patch was masked, 0 where it was seen; None without masking.
    ids_restore: (batch, num_patches) the permutation that puts the shuffled patches back in place.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MRMImageFeaturesOutput(ModelOutput):
    """Output of `MRMForPreTraining.get_image_features`: the image as the report branch reads it.

    last_hidden_state: (batch, 1 + seen patches, hidden) the encoder's tokens of the low-resolution view, cls first.
    pooler_output: (batch, report_hidden_size) the image's global feature, which the report branch adds to every
        token: the mean of the seen patch tokens, projected by the fusion. None for an image-only model (no fusion).
    mask: (batch, num_patches) 1 where a patch was masked; None without masking.
    ids_restore: (batch, num_patches) the permutation that puts the shuffled patches back in place; None without
        masking.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MRMForPreTrainingOutput(ModelOutput):
    """Output of MRM pre-training.

    loss: image_loss_weight * image_loss + report_loss_weight * report_loss (the report term only with `labels`). With
        `num_items_in_batch`, this batch's share of the loss of the whole accumulated batch instead (see `forward`).
    image_loss: norm-pix MSE over the masked patches of the high-resolution image (every sample has as many masked
        patches, so it is also the mean over samples of their own).
    report_loss: cross entropy over the report positions whose label is not -100.
    image_logits: (batch, num_patches, reconstruction_patch_size**2 * channels) the reconstructed patches.
    report_logits: the report branch's token scores, (batch, report length, report vocab). With `labels` and
        `config.sparse_prediction`, (labelled positions, report vocab) instead: the rows of `labels[labels != -100]`
        in order (the head, a projection to the whole vocabulary, runs only where a label counts).
    mask: (batch, num_patches) 1 where a patch was masked.
    ids_restore: (batch, num_patches) the permutation that puts the shuffled patches back in place.
    """

    loss: torch.FloatTensor | None = None
    image_loss: torch.FloatTensor | None = None
    report_loss: torch.FloatTensor | None = None
    image_logits: torch.FloatTensor | None = None
    report_logits: torch.FloatTensor | None = None
    mask: torch.FloatTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def get_2d_sincos_position_table(embed_dim: int, grid_size: int, add_cls_row: bool = True) -> torch.Tensor:
    """The fixed 2-D sin-cos position table of the published MRM code, shape (1 + grid_size**2, embed_dim).

    Layout as MAE's (column half first, then row; sin before cos; a zero row for cls), but with the published
    frequencies omega_i = 10000 ** (-i / (2 * D)) for i < D/2, D = embed_dim / 2, where MAE has 10000 ** (-i / (D/2)).
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim: expected a multiple of 4 for a 2-D sin-cos table; found {embed_dim}.")
    axis_dim = embed_dim // 2
    omega = torch.arange(axis_dim // 2, dtype=torch.float64) / axis_dim / 2.0
    omega = 1.0 / 10000**omega
    rows, cols = torch.meshgrid(
        torch.arange(grid_size, dtype=torch.float64), torch.arange(grid_size, dtype=torch.float64), indexing="ij"
    )
    halves = []
    for positions in (cols.flatten(), rows.flatten()):
        angles = positions[:, None] * omega[None, :]
        halves += [angles.sin(), angles.cos()]
    table = torch.cat(halves, dim=1)
    if add_cls_row:
        table = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), table], dim=0)
    return table.float()


def interpolate_position_table(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample a (1, 1 + n*n, D) position table to a height x width patch grid, bicubic; the cls row is kept."""
    cls_row, grid = table[:, :1], table[:, 1:]
    side = math.isqrt(grid.shape[1])
    if side * side != grid.shape[1]:
        raise ValueError(f"position table: expected a square grid of positions; found {grid.shape[1]} positions.")
    if (height, width) == (side, side):
        return table
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(height, width), mode="bicubic", align_corners=False).to(table.dtype)
    return torch.cat([cls_row, grid.permute(0, 2, 3, 1).reshape(1, height * width, -1)], dim=1)


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch of whole samples."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * keep / keep_prob


class MRMEmbeddings(nn.Module):
    """Patch embedding, fixed sin-cos positions, optional MAE masking, then the cls token in front."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_patches + 1, config.hidden_size), requires_grad=False
        )

    def random_masking(
        self, embeddings: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the patches with the smallest noise (MAE's per-sample shuffle); return them, the mask and the restore ids."""
        batch_size, num_patches, width = embeddings.shape
        check_fraction("mask_ratio", mask_ratio)
        if noise is None:
            noise = torch.rand(batch_size, num_patches, device=embeddings.device)
        elif tuple(noise.shape) != (batch_size, num_patches):
            raise ValueError(f"noise: expected shape {(batch_size, num_patches)}; found {tuple(noise.shape)}.")
        num_keep = int(num_patches * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise.to(embeddings.device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :num_keep]
        kept = torch.gather(embeddings, 1, ids_keep.unsqueeze(-1).expand(-1, -1, width))
        mask = torch.ones(batch_size, num_patches, device=embeddings.device)
        mask[:, :num_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return kept, mask, ids_restore

    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values: expected shape (batch, {self.config.num_channels}, height, width); "
                f"found {tuple(pixel_values.shape)}."
            )
        height, width = pixel_values.shape[-2:]
        size, patch = self.config.image_size, self.config.patch_size
        if interpolate_pos_encoding:
            if height % patch or width % patch:
                raise ValueError(
                    f"pixel_values: expected sides that are multiples of the patch size {patch}; "
                    f"found {height}x{width}."
                )
            positions = interpolate_position_table(self.position_embeddings, height // patch, width // patch)
        elif (height, width) != (size, size):
            raise ValueError(
                f"pixel_values: expected {size}x{size} images; found {height}x{width}. Resize them, or pass "
                "`interpolate_pos_encoding=True` to resample the position table."
            )
        else:
            positions = self.position_embeddings
        embeddings = self.patch_embeddings(pixel_values.to(self.patch_embeddings.weight.dtype))
        embeddings = embeddings.flatten(2).transpose(1, 2) + positions[:, 1:]

        mask = ids_restore = None
        if mask_ratio is not None or noise is not None:
            ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
            embeddings, mask, ids_restore = self.random_masking(embeddings, ratio, noise)

        cls_token = (self.cls_token + positions[:, :1]).expand(embeddings.shape[0], -1, -1)
        return torch.cat([cls_token, embeddings], dim=1), mask, ids_restore


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention in plain PyTorch, (batch, heads, length, head_dim) in, (batch, length, heads, head_dim) out.

    `attention_mask` is additive, (batch, 1, queries, keys): 0 where a key is seen, a large negative number where not.
    """
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask[:, :, :, : key.shape[-2]]
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MRMAttention(nn.Module):
    """Multi-head self-attention with one fused query-key-value projection, dispatched to eager, SDPA or others."""

    def __init__(self, config: MRMConfig, hidden_size: int, num_heads: int, qkv_bias: bool, dropout: float):
        super().__init__()
        # The shared model config: its `_attn_implementation` picks the kernel for every branch at once.
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = dropout
        self.is_causal = False
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.proj(attn_output.reshape(batch_size, length, -1)), attn_weights


class MRMMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class MRMLayer(GradientCheckpointingLayer):
    """A pre-norm ViT block (timm's `Block`), used by the encoder and the image decoder."""

    def __init__(
        self,
        config: MRMConfig,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = MRMAttention(
            config, hidden_size, num_heads, config.qkv_bias, config.attention_probs_dropout_prob
        )
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = MRMMLP(hidden_size, intermediate_size, config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path_rate = drop_path_rate

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + drop_path(self.dropout(attn_output), self.drop_path_rate, self.training)
        mlp_output = self.mlp(self.layernorm_after(hidden_states))
        return hidden_states + drop_path(self.dropout(mlp_output), self.drop_path_rate, self.training)


def encoder_layers(config: MRMConfig) -> nn.ModuleList:
    """The encoder's blocks, with stochastic depth rising linearly over them (as timm)."""
    depth = config.num_hidden_layers
    rates = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.ModuleList(
        MRMLayer(config, config.hidden_size, config.num_attention_heads, config.intermediate_size, rate)
        for rate in rates
    )


class MRMPooler(nn.Module):
    """Mean of the patch tokens (cls excluded), then LayerNorm: the published fine-tuning's `fc_norm` pooling."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layernorm(hidden_states[:, 1:].mean(dim=1))


class MRMImageDecoder(nn.Module):
    """MAE decoder that predicts each masked patch at the reconstruction resolution (2x the input by default)."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.embed = nn.Linear(config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, width), requires_grad=False)
        self.layers = nn.ModuleList(
            MRMLayer(config, width, config.decoder_num_attention_heads, config.decoder_intermediate_size)
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.prediction = nn.Linear(width, config.reconstruction_patch_size**2 * config.num_channels)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        hidden_states = self.embed(latent)
        batch_size, num_patches = ids_restore.shape
        width = hidden_states.shape[-1]
        mask_tokens = self.mask_token.expand(batch_size, num_patches + 1 - hidden_states.shape[1], -1)
        patches = torch.cat([hidden_states[:, 1:], mask_tokens.to(hidden_states.dtype)], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, width))
        hidden_states = torch.cat([hidden_states[:, :1], patches], dim=1) + self.position_embeddings
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        return self.prediction(self.layernorm(hidden_states))[:, 1:]


class MRMFusion(nn.Module):
    """The image's global feature for the report branch: mean of the visible patch tokens, projected to its width."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.projection = nn.Linear(config.hidden_size, config.report_hidden_size)

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        return self.projection(image_tokens[:, 1:].mean(dim=1))


class MRMReportEmbeddings(nn.Module):
    """BERT embeddings: word + position + token type, LayerNorm, dropout."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        width = config.report_hidden_size
        self.word_embeddings = nn.Embedding(config.report_vocab_size, width, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.report_max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.report_type_vocab_size, width)
        self.layernorm = nn.LayerNorm(width, eps=config.report_layer_norm_eps)
        self.dropout = nn.Dropout(config.report_hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"input_ids: expected reports of at most {self.position_embeddings.num_embeddings} tokens; found "
                f"{length}. Truncate them in the tokenizer (max_length)."
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.layernorm(embeddings))


class MRMReportLayer(GradientCheckpointingLayer):
    """A post-norm BERT layer."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        width = config.report_hidden_size
        self.attention = MRMAttention(
            config, width, config.report_num_attention_heads, True, config.report_attention_probs_dropout_prob
        )
        self.attention_layernorm = nn.LayerNorm(width, eps=config.report_layer_norm_eps)
        self.mlp = MRMMLP(width, config.report_intermediate_size, config.report_hidden_act)
        self.output_layernorm = nn.LayerNorm(width, eps=config.report_layer_norm_eps)
        self.dropout = nn.Dropout(config.report_hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
        hidden_states = self.attention_layernorm(hidden_states + self.dropout(attn_output))
        return self.output_layernorm(hidden_states + self.dropout(self.mlp(hidden_states)))


class MRMReportHead(nn.Module):
    """BERT's masked-LM head: dense, activation, LayerNorm, then an output layer untied from the word embeddings."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.dense = nn.Linear(config.report_hidden_size, config.report_hidden_size)
        self.activation = ACT2FN[config.report_hidden_act]
        self.layernorm = nn.LayerNorm(config.report_hidden_size, eps=config.report_layer_norm_eps)
        self.decoder = nn.Linear(config.report_hidden_size, config.report_vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layernorm(self.activation(self.dense(hidden_states))))


class MRMReportBranch(nn.Module):
    """BERT masked-LM over the report, with the image's global feature added to every token embedding."""

    def __init__(self, config: MRMConfig):
        super().__init__()
        self.config = config
        self.embeddings = MRMReportEmbeddings(config)
        self.layers = nn.ModuleList(MRMReportLayer(config) for _ in range(config.report_num_hidden_layers))
        self.head = MRMReportHead(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        image_feature: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token scores, (batch, length, vocab); only at the True `positions` (a (batch, length) mask) when given."""
        # Added after the embeddings' LayerNorm and dropout, at every position ([CLS] and [PAD] too), as published.
        hidden_states = self.embeddings(input_ids, token_type_ids) + image_feature[:, None, :]
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return self.head(hidden_states if positions is None else hidden_states[positions])


class MRMPreTrainedModel(PreTrainedModel):
    config: MRMConfig
    config_class = MRMConfig
    base_model_prefix = "image_encoder"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["MRMEmbeddings", "MRMLayer", "MRMReportLayer"]
    # Every attention goes through `ALL_ATTENTION_FUNCTIONS` with (batch, heads, length, head_dim) inputs and a mask
    # made by `create_bidirectional_mask`, as ViT's and BERT's do, so each kernel they support serves MRM too.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {"hidden_states": MRMLayer, "attentions": MRMAttention}

    def _init_weights(self, module: nn.Module):
        """The published initialisation: xavier-uniform linears (BERT's included), N(0, 0.02) tokens and embeddings."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            # Xavier-uniform as if the patch embedding were a linear layer on flattened patches.
            fan_out, fan_in = module.weight.shape[0], module.weight[0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(module.weight, -bound, bound)
            init.zeros_(module.bias)
        elif isinstance(module, MRMEmbeddings):
            init.normal_(module.cls_token, std=self.config.initializer_range)
            grid = self.config.image_size // self.config.patch_size
            init.copy_(module.position_embeddings, get_2d_sincos_position_table(self.config.hidden_size, grid)[None])
        elif isinstance(module, MRMImageDecoder):
            init.normal_(module.mask_token, std=self.config.initializer_range)
            grid = self.config.image_size // self.config.patch_size
            table = get_2d_sincos_position_table(self.config.decoder_hidden_size, grid)
            init.copy_(module.position_embeddings, table[None])
        else:
            # LayerNorm to (1, 0); nn.Embedding to N(0, initializer_range) with a zero [PAD] row.
            super()._init_weights(module)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Any MRM checkpoint opens as any MRM model, so the config names every one (`AUTO_MODEL_CLASSES`), not only
        # this class; the config adds its own AutoConfig entry when it saves itself.
        self.config.auto_map = {
            auto_class: f"{model_class.__module__.rsplit('.', 1)[-1]}.{model_class.__name__}"
            for auto_class, model_class in AUTO_MODEL_CLASSES.items()
        }
        return super().save_pretrained(save_directory, *args, **kwargs)


class MRMModel(MRMPreTrainedModel):
    """The MRM image encoder (ViT), the part downstream tasks load."""

    _keys_to_ignore_on_load_unexpected = [r"^image_decoder\.", r"^fusion\.", r"^report_branch\.", r"^classifier\."]
    # Absent by design from the folders it opens: a pre-training model's encoder has no pooling LayerNorm (its
    # decoder reads the tokens), and a classifier's encoder no final LayerNorm (its head reads the pooling one).
    _keys_to_ignore_on_load_missing = [r"^pooler\.", r"^layernorm\."]

    def __init__(self, config: MRMConfig, add_pooling_layer: bool = True, add_final_layernorm: bool = True):
        super().__init__(config)
        self.embeddings = MRMEmbeddings(config)
        self.layers = encoder_layers(config)
        # Without it (the classifier's encoder, as timm's avg-pool ViT with `fc_norm`), no parameter goes unused.
        self.layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if add_final_layernorm else nn.Identity()
        )
        self.pooler = MRMPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MRMModelOutput:
        r"""
        pixel_values: (batch, channels, image_size, image_size) normalised images.
        mask_ratio: hide this fraction of the patches (MAE masking); no masking when it and `noise` are None.
        noise: (batch, num_patches) the patches with the smallest noise are kept; with no `mask_ratio`, the config's.
        interpolate_pos_encoding: resample the position table to the input's patch grid (other input sizes).
        """
        hidden_states, mask, ids_restore = self.embeddings(
            pixel_values, mask_ratio=mask_ratio, noise=noise, interpolate_pos_encoding=bool(interpolate_pos_encoding)
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, None, **kwargs)
        return MRMModelOutput(
            last_hidden_state=self.layernorm(hidden_states),
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            mask=mask,
            ids_restore=ids_restore,
        )


class MRMForPreTraining(MRMPreTrainedModel):
    """MRM pre-training: masked image modelling at high resolution plus image-conditioned masked report modelling."""

    # Exact gradient accumulation divides each loss by its own count over the whole accumulated batch: images for the
    # image loss, labelled tokens for the report loss. `forward` does it when given both counts as `num_items_in_batch`
    # (`mrm_hf.training` passes them: MRMPreTrainer, accumulate_gradients). False on purpose: Trainer would otherwise
    # pass its own `num_items_in_batch`, a count of labelled tokens alone, which cannot normalise the image loss; a
    # plain Trainer instead divides this batch's own loss by the accumulation steps.
    accepts_loss_kwargs = False

    def __init__(self, config: MRMConfig):
        super().__init__(config)
        self.image_encoder = MRMModel(config, add_pooling_layer=False)
        self.image_decoder = MRMImageDecoder(config)
        # Image-only pre-training (use_report_branch=False) has no report parameters, used or not.
        self.fusion = MRMFusion(config) if config.use_report_branch else None
        self.report_branch = MRMReportBranch(config) if config.use_report_branch else None
        self.post_init()

    def downsample(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The encoder's low-resolution view: a bicubic resize (no antialias by default, as published)."""
        size = self.config.image_size
        return F.interpolate(
            pixel_values,
            size=(size, size),
            mode="bicubic",
            align_corners=False,
            antialias=self.config.downsample_antialias,
        )

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) -> (batch, patches, p*p*C) with p the reconstruction patch size, channels last."""
        p = self.config.reconstruction_patch_size
        batch_size, channels, height, width = pixel_values.shape
        patches = pixel_values.reshape(batch_size, channels, height // p, p, width // p, p)
        return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch_size, (height // p) * (width // p), p * p * channels)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of `patchify` for a square image."""
        p, channels = self.config.reconstruction_patch_size, self.config.num_channels
        batch_size, num_patches, _ = patches.shape
        side = math.isqrt(num_patches)
        image = patches.reshape(batch_size, side, side, p, p, channels).permute(0, 5, 1, 3, 2, 4)
        return image.reshape(batch_size, channels, side * p, side * p)

    def image_loss(self, pixel_values: torch.Tensor, image_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the masked high-resolution patches (targets normalised per patch with norm_pix_loss)."""
        target = self.patchify(pixel_values.float())
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((image_logits.float() - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def report_loss(self, report_logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross entropy over the positions whose label is not -100, and how many positions that is.

        report_logits: (..., vocab) scores of the positions of `labels` (...). The sum is divided once, by whoever
        knows over how many tokens to average: `forward` (this batch, or the accumulated batch) or a caller that sums
        over several batches (`mrm_hf.report_filling.report_loss_by_image`).
        """
        labels = labels.to(report_logits.device).reshape(-1)
        summed = F.cross_entropy(
            report_logits.float().reshape(-1, report_logits.shape[-1]), labels, ignore_index=-100, reduction="sum"
        )
        return summed, (labels != -100).sum()

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MRMImageFeaturesOutput:
        r"""
        The image's global feature as the report branch reads it (`pooler_output`, (batch, report_hidden_size)), and
        the encoder's tokens (`last_hidden_state`), from the model's own low-resolution view of `pixel_values`.

        pixel_values: (batch, channels, reconstruction_size, reconstruction_size), the high-resolution view, as
            `forward` takes it.
        mask_ratio, noise: MAE masking, as `MRMModel` takes them; without either the encoder sees every patch (what
            report filling reads), with them the seen patches alone (what `forward` reads in pre-training).
        """
        size = self.config.reconstruction_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (self.config.num_channels, size, size):
            raise ValueError(
                f"MRMForPreTraining pixel_values: expected the high-resolution view, (batch, "
                f"{self.config.num_channels}, {size}, {size}); found {tuple(pixel_values.shape)}. The model makes the "
                f"{self.config.image_size} px encoder input itself."
            )
        encoder_outputs: MRMModelOutput = self.image_encoder(
            self.downsample(pixel_values), mask_ratio=mask_ratio, noise=noise, return_dict=True, **kwargs
        )
        tokens = encoder_outputs.last_hidden_state
        return MRMImageFeaturesOutput(
            last_hidden_state=tokens,
            pooler_output=self.fusion(tokens) if self.fusion is not None else None,
            mask=encoder_outputs.mask,
            ids_restore=encoder_outputs.ids_restore,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )

    def get_report_logits(
        self,
        input_ids: torch.Tensor,
        image_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        The report branch's token scores, (batch, length, report vocab), for a masked report read with an image.

        image_features: (batch, report_hidden_size) the feature added to every token: `get_image_features`'
            `pooler_output`, or any other (zeros for no image).
        positions: (batch, length) bool; when given, only the True positions are scored, (positions, report vocab)
            (`config.sparse_prediction`).
        """
        if self.report_branch is None:
            raise ValueError(
                "MRMForPreTraining.get_report_logits: expected a model with a report branch; found one that pre-trains "
                "on images alone (use_report_branch=False)."
            )
        expected = (input_ids.shape[0], self.config.report_hidden_size)
        if tuple(image_features.shape) != expected:
            raise ValueError(
                f"MRMForPreTraining.get_report_logits image_features: expected shape {expected} (batch, "
                f"report_hidden_size), as get_image_features' pooler_output; found {tuple(image_features.shape)}."
            )
        return self.report_branch(input_ids, image_features, attention_mask, token_type_ids, positions=positions)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MRMForPreTrainingOutput:
        r"""
        pixel_values: (batch, channels, reconstruction_size, reconstruction_size), the high-resolution view; the
            model makes the encoder's image_size view itself. NaN or infinite values are not checked here (a check
            would synchronise the device on every step) and give a NaN loss: `MRMImageProcessor` and
            `DataCollatorForMRM` refuse them, naming the image or example.
        input_ids: (batch, length) the masked report; None pre-trains on images alone (MAE with high-res targets).
            Ids must lie in the report vocabulary (`DataCollatorForMRM` checks, naming the example).
        attention_mask, token_type_ids: the report's, as a BERT takes them.
        labels: (batch, length) ids to predict, -100 where nothing is predicted. -100 on every unmasked token gives
            the paper's masked-token loss; the full original ids give the published code's loss.
        noise: (batch, num_patches) masking noise; the patches with the smallest noise are kept.
        num_items_in_batch: (2,) the images and the labelled report tokens of the whole accumulated batch, over every
            process (`mrm_hf.training.accumulation_counts`). Given, `loss` is this batch's share of that batch's
            loss: the summed image and report losses each divided by their own count there, so the shares of the
            micro-batches add up to the full batch's loss. `image_loss` and `report_loss` stay this batch's means.
        """
        if input_ids is not None and self.report_branch is None:
            raise ValueError(
                "MRMForPreTraining input_ids: expected none, as this model pre-trains on images alone "
                "(use_report_branch=False); found a report. Pass pixel_values only."
            )
        if labels is not None and input_ids is None:
            raise ValueError(
                "MRMForPreTraining labels: expected them with the masked report as `input_ids` (they are report token "
                "ids to predict); found no input_ids. Pass the masked report as `input_ids` too."
            )
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(
                f"labels: expected the shape of input_ids, {tuple(input_ids.shape)}; found {tuple(labels.shape)}."
            )

        if num_items_in_batch is not None and tuple(num_items_in_batch.shape) != (2,):
            raise ValueError(
                "MRMForPreTraining num_items_in_batch: expected the (images, labelled report tokens) of the "
                f"accumulated batch, shape (2,); found shape {tuple(num_items_in_batch.shape)}."
            )

        image_outputs: MRMImageFeaturesOutput = self.get_image_features(
            pixel_values, mask_ratio=self.config.mask_ratio, noise=noise, return_dict=True, **kwargs
        )
        latent, mask = image_outputs.last_hidden_state, image_outputs.mask

        image_logits = self.image_decoder(latent, image_outputs.ids_restore)
        image_loss = self.image_loss(pixel_values, image_logits, mask)

        report_logits = report_loss = summed = None
        labels = None if labels is None else labels.to(latent.device)
        # Sparse prediction scores the labelled positions alone; the loss is the same either way.
        labelled = labels != -100 if labels is not None and self.config.sparse_prediction else None
        if input_ids is not None:
            report_logits = self.get_report_logits(
                input_ids, image_outputs.pooler_output, attention_mask, token_type_ids, positions=labelled
            )
        if labels is not None:
            summed, count = self.report_loss(report_logits, labels if labelled is None else labels[labelled])
            report_loss = summed / count.clamp(min=1)

        image_weight, report_weight = self.config.image_loss_weight, self.config.report_loss_weight
        if num_items_in_batch is None:
            loss = image_weight * image_loss
            if report_loss is not None:
                loss = loss + report_weight * report_loss
        else:
            # Every image has as many masked patches, so image_loss * batch is the sum of the images' own losses.
            num_images, num_tokens = num_items_in_batch.to(image_loss.device).unbind()
            loss = image_weight * image_loss * len(pixel_values) / num_images
            if summed is not None:
                loss = loss + report_weight * summed / num_tokens.clamp(min=1)

        return MRMForPreTrainingOutput(
            loss=loss,
            image_loss=image_loss,
            report_loss=report_loss,
            image_logits=image_logits,
            report_logits=report_logits,
            mask=mask,
            ids_restore=image_outputs.ids_restore,
            hidden_states=image_outputs.hidden_states,
            attentions=image_outputs.attentions,
        )


class MRMForImageClassification(MRMPreTrainedModel):
    """The MRM encoder with a linear head on the pooled output (the published fine-tuning model)."""

    # The loss is a per-batch mean; Trainer divides it by the accumulation steps itself.
    accepts_loss_kwargs = False
    # The logits come from the pooler's own LayerNorm (the published `fc_norm`), so the encoder's final LayerNorm,
    # which pre-training checkpoints and older classifiers hold, has no use here: it is not built, and not loaded.
    _keys_to_ignore_on_load_unexpected = [
        r"^image_decoder\.", r"^fusion\.", r"^report_branch\.", r"^image_encoder\.layernorm\."
    ]

    def __init__(self, config: MRMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.image_encoder = MRMModel(config, add_pooling_layer=True, add_final_layernorm=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()
        # The published fine-tuning trains the position table that pre-training kept fixed.
        self.image_encoder.embeddings.position_embeddings.requires_grad_(True)

    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if module is getattr(self, "classifier", None) and isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=2e-5)
            init.zeros_(module.bias)

    def _check_labels(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Labels in the form the problem type needs (inferred as transformers does when unset), or a clear error."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.ndim == 1 and not labels.is_floating_point():
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        problem_type = self.config.problem_type
        if problem_type == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"labels: expected multi-label targets of shape (batch, num_labels) = {tuple(logits.shape)}; "
                    f"found {tuple(labels.shape)}."
                )
            return labels.to(logits.dtype)
        if problem_type == "single_label_classification":
            if labels.ndim != 1 or labels.is_floating_point():
                raise ValueError(
                    f"labels: expected integer class ids of shape (batch,) for single-label classification; found "
                    f"{labels.dtype} labels of shape {tuple(labels.shape)}."
                )
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_labels):
                raise ValueError(f"labels: expected class ids in [0, {self.num_labels}); found {labels.tolist()}.")
            return labels
        return labels.to(logits.dtype)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""
        labels: (batch,) class ids for single-label, (batch, num_labels) 0/1 targets for multi-label (BCE with
            logits), (batch,) or (batch, num_labels) values for regression; `config.problem_type` says which, and is
            inferred as transformers does when unset.
        """
        outputs: MRMModelOutput = self.image_encoder(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        logits = self.classifier(outputs.pooler_output)
        loss = None
        if labels is not None:
            labels = self._check_labels(labels.to(logits.device), logits)
            loss = self.loss_function(labels, logits, self.config)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MRMFeaturePyramid(nn.Module):
    """The published Feature2Pyramid neck: each stride-16 map rescaled by its factor, for a decoder that wants a pyramid.

    4: two 2x transposed convolutions with BatchNorm and GELU between them; 2: one 2x transposed convolution; 1: as is;
    0.5 and 0.25: max-pooling. The published (4, 2, 1, 0.5) gives strides 4, 8, 16 and 32.
    """

    def __init__(self, hidden_size: int, rescales):
        super().__init__()
        stages = []
        for scale in rescales:
            if scale == 4:
                stages.append(
                    nn.Sequential(
                        nn.ConvTranspose2d(hidden_size, hidden_size, kernel_size=2, stride=2),
                        nn.BatchNorm2d(hidden_size),
                        nn.GELU(),
                        nn.ConvTranspose2d(hidden_size, hidden_size, kernel_size=2, stride=2),
                    )
                )
            elif scale == 2:
                stages.append(nn.ConvTranspose2d(hidden_size, hidden_size, kernel_size=2, stride=2))
            elif scale == 1:
                stages.append(nn.Identity())
            elif scale in (0.5, 0.25):
                stages.append(nn.MaxPool2d(kernel_size=int(1 / scale), stride=int(1 / scale)))
            else:
                raise ValueError(f"feature_pyramid_rescales: expected factors among 4, 2, 1, 0.5, 0.25; found {scale}.")
        self.stages = nn.ModuleList(stages)

    def forward(self, feature_maps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(stage(feature_map) for stage, feature_map in zip(self.stages, feature_maps))


class MRMBackbone(BackboneMixin, MRMPreTrainedModel):
    """The MRM encoder as a transformers backbone: feature maps of chosen blocks for a dense head (UperNet).

    Its encoder has MRMModel's submodule names, so every MRM checkpoint (encoder, pre-training model, classifier)
    loads into it. As in the published segmentation: any input size (the position table is resampled, bicubic, to the
    input's patch grid), the final LayerNorm unused, the position table trained, and the Feature2Pyramid neck.
    """

    _keys_to_ignore_on_load_unexpected = [
        r"^(image_encoder\.)?layernorm\.", r"^(image_encoder\.)?pooler\.", r"^classifier\.", r"^image_decoder\.",
        r"^fusion\.", r"^report_branch\.",
    ]  # fmt: skip

    def __init__(self, config: MRMConfig):
        super().__init__(config)
        self.embeddings = MRMEmbeddings(config)
        self.layers = encoder_layers(config)
        rescales = config.feature_pyramid_rescales
        if rescales is not None and len(rescales) != len(self.out_features):
            raise ValueError(
                f"feature_pyramid_rescales: expected one factor per map that out_indices picks, "
                f"{len(self.out_features)} ({self.out_indices}); found {len(rescales)} ({list(rescales)}). Pass as "
                "many, e.g. out_indices=[3, 5, 7, 11], or feature_pyramid_rescales=None for the plain maps."
            )
        self.neck = MRMFeaturePyramid(config.hidden_size, rescales) if rescales is not None else None
        self.num_features = [config.hidden_size] * config.num_hidden_layers
        self.post_init()
        # The published segmentation trains the position table that pre-training kept fixed.
        self.embeddings.position_embeddings.requires_grad_(True)

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    @property
    def out_features(self) -> list[str]:
        return self.config.out_features  # the config's, defaults included (BackboneMixin reads only explicit ones)

    @property
    def out_indices(self) -> list[int]:
        return self.config.out_indices

    @can_return_tuple
    @filter_output_hidden_states
    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BackboneOutput:
        r"""
        pixel_values: (batch, channels, height, width) normalised images; sides multiples of the patch size.
        Returns `feature_maps`, one (batch, hidden_size, h, w) map per out_feature, after the neck.
        """
        height, width = pixel_values.shape[-2:]
        patch = self.config.patch_size
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=True)[0]
        all_hidden_states = [hidden_states]
        for layer in self.layers:
            hidden_states = layer(hidden_states, None, **kwargs)
            all_hidden_states.append(hidden_states)
        feature_maps = tuple(
            hidden_state[:, 1:].transpose(1, 2).reshape(hidden_state.shape[0], -1, height // patch, width // patch)
            for stage, hidden_state in zip(self.stage_names, all_hidden_states[1:])
            if stage in self.out_features
        )
        if self.neck is not None:
            feature_maps = self.neck(feature_maps)
        return BackboneOutput(feature_maps=feature_maps, hidden_states=tuple(all_hidden_states))


class UperNetForSemanticSegmentation(modeling_upernet.UperNetForSemanticSegmentation):
    """UperNet on `MRMBackbone` (the published SIIM-ACR segmentation model): transformers' UperNet, its weights and
    forward, with the backbone built from this file.

    transformers builds a UperNet's backbone through `AutoBackbone`, which knows MRM only after `import mrm_hf`; this
    class builds `MRMBackbone` itself, so that a segmentation folder opens with `trust_remote_code` where mrm_hf is not
    installed. It keeps transformers' class name, by which `pipeline("image-segmentation")` recognises a model.
    """

    config_class = MRMUperNetConfig

    def __init__(self, config: MRMUperNetConfig):
        modeling_upernet.UperNetPreTrainedModel.__init__(self, config)
        self.backbone = MRMBackbone(config.backbone_config)
        self.decode_head = modeling_upernet.UperNetHead(config, in_channels=self.backbone.channels)
        self.auxiliary_head = (
            modeling_upernet.UperNetFCNHead(config, in_channels=self.backbone.channels)
            if config.use_auxiliary_head
            else None
        )
        self.post_init()


UperNetForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")


# The one table of MRM's models and the auto class that opens each: the `auto_map` every saved config carries and
# mrm_hf's local `AutoX.register` calls both come from it, so a new head is one line here.
AUTO_MODEL_CLASSES: dict[str, type[MRMPreTrainedModel]] = {
    "AutoModel": MRMModel,
    "AutoModelForPreTraining": MRMForPreTraining,
    "AutoModelForImageClassification": MRMForImageClassification,
    "AutoBackbone": MRMBackbone,
}
for auto_class, model_class in AUTO_MODEL_CLASSES.items():
    # Marks the class as custom code, so that `save_pretrained` copies this file and its imports beside the weights.
    model_class.register_for_auto_class(auto_class)
del auto_class, model_class

__all__ = [
    "AUTO_MODEL_CLASSES",
    "MRMModel",
    "MRMForPreTraining",
    "MRMForImageClassification",
    "MRMPreTrainedModel",
    "MRMBackbone",
]
