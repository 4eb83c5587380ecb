"""Test-only, independent re-creation of the published MRM computation (RL4M/MRM-pytorch @ 3730ba4).

Authority: ../shared/reference/MRM_NOTES.md (sections 1, 1.4, 3.2, 5). Nothing here imports mrm_hf.
Built from timm 1.0.31 (`Block`, `PatchEmbed`, `VisionTransformer`) and transformers 5.x BERT modules,
arranged so that `PublishedMRM().state_dict()` has exactly the keys of the published `MRM.pth["model"]`
(minus BERT's old persistent `position_ids` buffer, which `make_published_checkpoint` can add).
"""

import argparse
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block, PatchEmbed, VisionTransformer
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertOnlyMLMHead, BertPooler

__all__ = [
    "PublishedMRM",
    "published_sincos_2d",
    "published_checkpoint_keys",
    "randomize_",
    "published_classifier",
    "make_published_checkpoint",
]


# --------------------------------------------------------------------------------------------------
# Fixed positional tables
# --------------------------------------------------------------------------------------------------


def _published_sincos_1d(dim, pos):
    """Official 1-D sin-cos table: (M,) positions -> (M, dim)."""
    assert dim % 2 == 0
    # Notes §5: the official code divides by D and then by 2 (MAE divides by D/2), i.e. 10000^(-i/(2D)).
    omega = np.arange(dim // 2, dtype=np.float64) / dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def published_sincos_2d(embed_dim, grid_size, cls_token=True):
    """Official 2-D sin-cos table as a float32 tensor of shape (1, [1+] grid_size**2, embed_dim)."""
    assert embed_dim % 2 == 0
    coords = np.arange(grid_size, dtype=np.float64)
    grid = np.stack(np.meshgrid(coords, coords), axis=0)  # grid[0] = column (x), grid[1] = row (y)
    emb = np.concatenate(
        [_published_sincos_1d(embed_dim // 2, grid[0]), _published_sincos_1d(embed_dim // 2, grid[1])], axis=1
    )
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# BERT masked LM (transformers 4.17 `MyBertMaskedLM`, rebuilt from v5 building blocks)
# --------------------------------------------------------------------------------------------------


class _ImageConditionedBert(nn.Module):
    """Stands for the published `MyBertModel`: embeddings + image feature -> encoder (pooler kept, unused)."""

    def __init__(self, config):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        # Notes §5.7: `add_pooling_layer=False` is ignored by MyBertModel, so the pooler exists (and is unused).
        self.pooler = BertPooler(config)

    def forward(self, image_feature, input_ids, attention_mask, token_type_ids):
        """Return the last hidden state (N, T, H)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        emb = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        # Notes §1.2 step 4: added after the embedding LayerNorm and dropout, at every position (CLS and PAD too).
        emb = emb + image_feature.unsqueeze(1)
        # transformers 4.17 get_extended_attention_mask: additive (1 - m) * -10000, broadcast over heads and queries.
        ext = (1.0 - attention_mask[:, None, None, :].to(emb.dtype)) * -10000.0
        return self.encoder(emb, attention_mask=ext).last_hidden_state


class _BertMaskedLM(nn.Module):
    """Stands for `MyBertMaskedLM`: `bert` + `cls` (untied MLM decoder, shared output bias)."""

    def __init__(self, config):
        super().__init__()
        self.bert = _ImageConditionedBert(config)
        self.cls = BertOnlyMLMHead(config)
        # transformers 4.17: decoder.bias IS predictions.bias (both names in the state dict). The decoder
        # weight is NOT tied to the word embeddings (notes §5.6).
        self.cls.predictions.decoder.bias = self.cls.predictions.bias

    def forward(self, image_feature, input_ids, attention_mask, token_type_ids):
        """Return MLM logits (N, T, V)."""
        return self.cls(self.bert(image_feature, input_ids, attention_mask, token_type_ids))


class _BertEncoderWrapper(nn.Module):
    """Stands for the published `bert.bert_encoder.BertEncoder` (holds `model`)."""

    def __init__(self, config):
        super().__init__()
        self.model = _BertMaskedLM(config)


def _bert_config(vocab_size, hidden, layers, heads, ffn, max_pos, type_vocab, hidden_dropout, attn_dropout):
    """The published `BertConfig` (bert_encoder.py), eager attention."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_act="gelu",
        hidden_dropout_prob=hidden_dropout,
        attention_probs_dropout_prob=attn_dropout,
        max_position_embeddings=max_pos,
        type_vocab_size=type_vocab,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        position_embedding_type="absolute",
        tie_word_embeddings=False,
    )
    config._attn_implementation = "eager"
    return config


# --------------------------------------------------------------------------------------------------
# The pre-training model
# --------------------------------------------------------------------------------------------------


class PublishedMRM(nn.Module):
    """Faithful re-creation of the official `model_mrm.MRM` as built by `mrm()` with `--norm_pix_loss`."""

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_embed_dim=768,
        decoder_depth=4,
        decoder_num_heads=6,
        mlp_ratio=4.0,
        norm_pix_loss=True,
        bert_vocab_size=30000,
        bert_hidden_size=384,
        bert_layers=6,
        bert_heads=6,
        bert_intermediate_size=1536,
        bert_max_position=100,
        bert_type_vocab_size=2,
        bert_hidden_dropout=0.1,
        bert_attn_dropout=0.1,
    ):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.img_size = img_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss

        # Registration order reproduces the published state-dict order.
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(decoder_embed_dim)
        # Notes §1.1: the target is the 2x image, so the prediction is (2p)^2 * C per patch.
        self.decoder_pred = nn.Linear(decoder_embed_dim, (patch_size * 2) ** 2 * in_chans, bias=True)

        self.bert_config = _bert_config(
            bert_vocab_size,
            bert_hidden_size,
            bert_layers,
            bert_heads,
            bert_intermediate_size,
            bert_max_position,
            bert_type_vocab_size,
            bert_hidden_dropout,
            bert_attn_dropout,
        )
        self.bert_encoder = _BertEncoderWrapper(self.bert_config)
        self.bert_mlp = nn.Linear(embed_dim, bert_hidden_size, bias=True)

        self.initialize_weights()

    # ---- initialisation -------------------------------------------------------------------------

    def initialize_weights(self):
        """Published init: sin-cos tables, xavier Linear (BERT too), LN (1,0), tokens N(0,.02), embeddings N(0,.02)."""
        grid = int(self.patch_embed.num_patches**0.5)
        self.pos_embed.data.copy_(published_sincos_2d(self.pos_embed.shape[-1], grid, cls_token=True))
        self.decoder_pos_embed.data.copy_(published_sincos_2d(self.decoder_pos_embed.shape[-1], grid, cls_token=True))

        # Only the conv weight is re-initialised; its bias keeps PyTorch's Conv2d default init (as published).
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

        # What HF's post_init did before MRM's re-init: embeddings N(0, 0.02), PAD row of the word table zero.
        for m in self.bert_encoder.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=self.bert_config.initializer_range)
                if m.padding_idx is not None:
                    m.weight.data[m.padding_idx].zero_()
        # Notes §5.6: MRM's xavier / zero-bias / LN(1,0) then overrides HF init on every Linear and LN,
        # BERT and the MLM head included (this also zeroes the shared MLM output bias).
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        """Xavier-uniform Linear with zero bias; LayerNorm weight 1, bias 0."""
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    # ---- image branch ---------------------------------------------------------------------------

    @property
    def target_patch_size(self):
        """Side of a target patch: twice the input patch (notes §1.1)."""
        return self.patch_embed.patch_size[0] * 2

    def low_res(self, imgs_high):
        """Encoder input: bicubic tensor resize to img_size without antialias (torchvision 0.9.2, notes §5.11)."""
        return F.interpolate(imgs_high, size=(self.img_size, self.img_size), mode="bicubic", align_corners=False)

    def patchify(self, imgs):
        """(N, C, H, W) -> (N, L, (2p)^2 * C) in MAE's nchpwq->nhwpqc order."""
        p = self.target_patch_size
        n, c = imgs.shape[:2]
        assert imgs.shape[2] == imgs.shape[3] and imgs.shape[2] % p == 0
        h = w = imgs.shape[2] // p
        x = imgs.reshape(n, c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, h * w, p**2 * c)

    def unpatchify(self, x):
        """(N, L, (2p)^2 * C) -> (N, C, H, W)."""
        p = self.target_patch_size
        c = self.in_chans
        h = w = int(x.shape[1] ** 0.5)
        assert h * w == x.shape[1]
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def random_masking(self, x, mask_ratio, noise=None):
        """MAE per-sample shuffle by argsort(noise); returns (kept tokens, mask with 1 = removed, ids_restore)."""
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, length], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, imgs_low, mask_ratio, noise=None):
        """Patch-embed, add pos, mask, prepend cls+pos[0], blocks, final norm."""
        x = self.patch_embed(imgs_low)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent, ids_restore):
        """Embed, unshuffle with mask tokens, add pos, blocks, norm, predict, drop cls."""
        x = self.decoder_embed(latent)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))
        return x[:, 1:, :]

    def forward_loss(self, imgs_high, pred, mask):
        """Masked-patch MSE against the (norm-pix) high-res target."""
        target = self.patchify(imgs_high)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased (torch default), notes §5.12
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    # ---- report branch --------------------------------------------------------------------------

    def forward_report(self, latent, ids, attention_mask, token_type_ids=None):
        """MLM logits conditioned on the mean of the projected visible patch tokens (notes §1.2)."""
        feat = self.bert_mlp(latent)  # applied to cls too, then cls dropped: same as projecting the mean
        feat = feat[:, 1:, :].mean(dim=1)
        return self.bert_encoder.model(feat, ids, attention_mask, token_type_ids)

    def report_loss(self, logits, labels):
        """Plain CrossEntropy over every position (notes §5.1: labels are the full original ids)."""
        return nn.CrossEntropyLoss()(logits.view(-1, logits.shape[-1]), labels.view(-1))

    # ---- full forward ---------------------------------------------------------------------------

    def forward(self, imgs_high, ids, attention_mask, labels, mask_ratio=0.75, noise=None, token_type_ids=None):
        """Published `MRM.forward`: dict of losses, pred_img, report_logits, mask (+ latent, ids_restore)."""
        imgs_low = self.low_res(imgs_high)
        latent, mask, ids_restore = self.forward_encoder(imgs_low, mask_ratio, noise)
        # Published order: report branch before the image decoder (matters only for dropout RNG in train mode).
        report_logits = self.forward_report(latent, ids, attention_mask, token_type_ids)
        loss_report = self.report_loss(report_logits, labels) if labels is not None else None
        pred = self.forward_decoder(latent, ids_restore)
        loss_img = self.forward_loss(imgs_high, pred, mask)
        return {
            "loss_img": loss_img,
            "loss_report": loss_report,
            "pred_img": pred,
            "report_logits": report_logits,
            "mask": mask,
            "latent": latent,
            "ids_restore": ids_restore,
        }


# --------------------------------------------------------------------------------------------------
# Key list of the published checkpoint, written out independently of any module
# --------------------------------------------------------------------------------------------------

_BLOCK_KEYS = [
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
]  # fmt: skip
_BERT_LAYER_KEYS = [
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias",
]  # fmt: skip


def published_checkpoint_keys(depth=12, decoder_depth=4, bert_layers=6, position_ids=False):
    """The published `MRM.pth["model"]` keys in state-dict order (position_ids: the transformers-4.17 buffer)."""
    keys = ["cls_token", "pos_embed", "mask_token", "decoder_pos_embed"]
    keys += ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    keys += [f"blocks.{i}.{k}" for i in range(depth) for k in _BLOCK_KEYS]
    keys += ["norm.weight", "norm.bias", "decoder_embed.weight", "decoder_embed.bias"]
    keys += [f"decoder_blocks.{i}.{k}" for i in range(decoder_depth) for k in _BLOCK_KEYS]
    keys += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    b = "bert_encoder.model.bert."
    keys += [b + "embeddings.position_ids"] if position_ids else []
    keys += [
        b + "embeddings.word_embeddings.weight",
        b + "embeddings.position_embeddings.weight",
        b + "embeddings.token_type_embeddings.weight",
        b + "embeddings.LayerNorm.weight",
        b + "embeddings.LayerNorm.bias",
    ]
    keys += [f"{b}encoder.layer.{i}.{k}" for i in range(bert_layers) for k in _BERT_LAYER_KEYS]
    keys += [b + "pooler.dense.weight", b + "pooler.dense.bias"]
    c = "bert_encoder.model.cls.predictions."
    keys += [
        c + "bias",
        c + "transform.dense.weight",
        c + "transform.dense.bias",
        c + "transform.LayerNorm.weight",
        c + "transform.LayerNorm.bias",
        c + "decoder.weight",
        c + "decoder.bias",
    ]
    keys += ["bert_mlp.weight", "bert_mlp.bias"]
    return keys


# --------------------------------------------------------------------------------------------------
# Test helpers
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def randomize_(module, seed):
    """Overwrite every parameter and persistent float buffer with seeded random values; returns the module."""
    gen = torch.Generator().manual_seed(seed)
    seen = set()

    def fill(t, kind):
        if id(t) in seen or not t.is_floating_point():
            return  # shared tensors are filled once; integer buffers (e.g. position_ids) are indices, left alone
        seen.add(id(t))
        if kind == "norm_weight":
            v = 1.0 + 0.1 * torch.randn(t.shape, generator=gen)
        elif kind == "bias" or t.dim() <= 1:
            v = 0.05 * torch.randn(t.shape, generator=gen)
        elif kind == "table":
            v = 0.2 * torch.randn(t.shape, generator=gen)  # cls/mask tokens and positional tables
        else:
            fan_in = int(np.prod(t.shape[1:]))
            v = torch.randn(t.shape, generator=gen) / fan_in**0.5
        t.copy_(v.to(dtype=t.dtype, device=t.device))

    for mod in module.modules():
        is_norm = isinstance(mod, nn.LayerNorm) or type(mod).__name__.endswith(("LayerNorm", "RMSNorm", "GroupNorm"))
        for name, p in mod.named_parameters(recurse=False):
            if is_norm and name == "weight":
                kind = "norm_weight"
            elif name.endswith("bias"):
                kind = "bias"
            elif isinstance(mod, (nn.Linear, nn.Conv2d, nn.Embedding)):
                kind = "weight"
            else:
                kind = "table"
            fill(p, kind)
        for name, b in mod.named_buffers(recurse=False):
            if name not in mod._non_persistent_buffers_set:
                fill(b, "table")

    # Published behaviour: the MLM output bias is one tensor under two names; keep them equal if untied here.
    for name, mod in module.named_modules():
        pred = getattr(mod, "predictions", None) if name.endswith("cls") else None
        if pred is not None and hasattr(pred, "bias") and getattr(pred.decoder, "bias", None) is not None:
            if pred.decoder.bias is not pred.bias:
                pred.decoder.bias.copy_(pred.bias)
    return module


def published_classifier(
    num_classes,
    img_size=224,
    patch_size=16,
    in_chans=3,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    drop_path_rate=0.1,
    **kwargs,
):
    """Published fine-tuning ViT (`models_vit.vit_base_patch16(global_pool=True)`) built from timm 1.0.31."""
    # timm 1.0.31 with global_pool='avg' (fc_norm=None -> True): mean over patch tokens (cls excluded),
    # then `fc_norm` LayerNorm, then `head`; `norm` is Identity, so the state dict has fc_norm.* / head.*
    # and no norm.*, exactly like the published subclass (which deletes `norm`), notes §3.2. Checked.
    # drop_path_rate 0.1 is the published NIH setting; it only acts in train mode.
    model = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        global_pool="avg",
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        drop_path_rate=drop_path_rate,
        **kwargs,
    )
    assert isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.LayerNorm)
    return model


def make_published_checkpoint(path, model, epoch=199, position_ids=False):
    """torch.save a dict shaped like the published MRM.pth; position_ids adds BERT's 4.17 persistent buffer."""
    state = model.state_dict()
    if position_ids:
        key = "bert_encoder.model.bert.embeddings.position_ids"
        max_pos = model.bert_encoder.model.bert.embeddings.position_embeddings.num_embeddings
        ordered = OrderedDict()
        for k, v in state.items():
            if k == "bert_encoder.model.bert.embeddings.word_embeddings.weight":
                ordered[key] = torch.arange(max_pos).expand((1, -1)).clone()
            ordered[k] = v
        state = ordered
    checkpoint = {
        "model": state,
        "optimizer": {
            "state": {},
            "param_groups": [{"lr": 0.0, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.05, "params": [0]}],
        },
        "epoch": epoch,
        "scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
        # The published file pickles its argparse Namespace too (main_pretrain.py `save_model`).
        "args": argparse.Namespace(model="mrm", mask_ratio=0.75, norm_pix_loss=True, blr=1.5e-4, epochs=200),
    }
    torch.save(checkpoint, path)
    return checkpoint
