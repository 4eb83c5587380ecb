"""Why-figures for MRM classifiers: where on the radiograph each finding's score comes from.

- Per finding, a heatmap from captum's Integrated Gradients (`pip install "mrm-hf[explain]"`), read at the ViT's
  patch tokens: the pixel attributions, from a mid-gray image to the radiograph, summed over each 16 px patch (one
  token), their positive part (evidence for the finding) drawn over the image. Why not Grad-CAM: MRM's classifier pools
  the patch tokens by their mean and then a LayerNorm, which is blind to the scale of the mean, so the last block's
  Grad-CAM terms sum to about zero over the tokens, and which ones come out positive is a matter of training: on the
  synthetic test (tests/test_explain.py) it put the peak in the finding for 0% to 81% of positives depending on the
  seed and the training length (three seeds, 80 and 200 steps), against 96% to 100% for Integrated Gradients.
- Attention rollout (Abnar & Zuidema, 2020) from `output_attentions=True`, which needs eager attention: the
  head-averaged attention of every block plus the identity of the residual path, multiplied through the blocks; the
  map is the mean attention that the patch tokens (the pooled ones) pay to each patch. It is one map per image and
  does not depend on the finding: it shows what the encoder looks at, not what a score rests on.
- `explain_figure` draws one panel per finding (its heatmap over the radiograph, the finding's name and score) and the
  rollout panel, with matplotlib.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def require_captum():
    """captum's IntegratedGradients, or an ImportError that says how to install it (callers check it before any
    work)."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError as err:
        raise ImportError(
            "mrm_hf.explain: expected captum for the findings' heatmaps; found it not installed. "
            "pip install \"mrm-hf[explain]\""
        ) from err
    return IntegratedGradients


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map scaled to [0, 1] by its own range (a flat map becomes zeros)."""
    flat = maps.flatten(-2)
    low, high = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    return ((flat - low) / (high - low).clamp(min=1e-12)).reshape(maps.shape)


def _patch_maps(pixel_attributions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, H, W) pixel attributions as (B, H, W) maps of the ViT's patch tokens: each token's summed attribution
    (the evidence for the finding, negative parts dropped), drawn bilinearly at the input's size, scaled to [0, 1]."""
    tokens = F.avg_pool2d(pixel_attributions.sum(dim=1, keepdim=True), patch_size).clamp(min=0)
    maps = F.interpolate(tokens, size=pixel_attributions.shape[-2:], mode="bilinear", align_corners=False)
    return _normalise(maps[:, 0])


def finding_heatmaps(model, pixel_values: torch.Tensor, targets=None, n_steps: int = 16) -> torch.Tensor:
    """Per finding, where its logit comes from: (batch, findings, H, W) maps in [0, 1] at the input's size.

    captum's Integrated Gradients from a mid-gray image (0 after normalisation) to the radiograph, `n_steps` steps,
    summed over each patch token. targets: the finding ids (default: every one of `config.id2label`).
    """
    IntegratedGradients = require_captum()
    targets = list(range(model.config.num_labels)) if targets is None else list(targets)
    was_training = model.training
    model.eval()
    attribution = IntegratedGradients(lambda values: model(pixel_values=values).logits)
    maps = []
    try:
        for target in targets:
            pixels = attribution.attribute(pixel_values, target=target, n_steps=n_steps,
                                           internal_batch_size=max(len(pixel_values) * n_steps, 1))
            maps.append(_patch_maps(pixels.detach().float(), model.config.patch_size))
    finally:
        model.train(was_training)
    return torch.stack(maps, dim=1)


@torch.no_grad()
def attention_rollout(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Attention rollout of an MRM encoder or classifier: (batch, H, W) maps in [0, 1] at the input's size.

    The model must run eager attention (`attn_implementation="eager"`): the fused kernels return no weights.
    """
    implementation = model.config._attn_implementation
    if implementation != "eager":
        raise ValueError(f"attention_rollout: expected a model loaded with attn_implementation=\"eager\", the one "
                         f"kernel that returns attention weights; found {implementation!r}. Load it with "
                         "from_pretrained(..., attn_implementation=\"eager\") or call "
                         "model.set_attn_implementation(\"eager\").")
    was_training = model.training
    model.eval()
    attentions = model(pixel_values=pixel_values, output_attentions=True).attentions
    model.train(was_training)
    if not attentions:
        raise ValueError("attention_rollout: expected the encoder's attention weights; found none in the model's "
                         "output.")
    tokens = attentions[0].shape[-1]
    rollout = torch.eye(tokens, dtype=torch.float32).expand(pixel_values.shape[0], -1, -1)
    for attention in attentions:
        mixed = 0.5 * attention.float().mean(dim=1) + 0.5 * torch.eye(tokens)
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    patch = model.config.patch_size
    rows, cols = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
    received = rollout[:, 1:, 1:].mean(dim=1).reshape(-1, 1, rows, cols)
    maps = F.interpolate(received, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _normalise(maps)


def finding_scores(model, logits: torch.Tensor) -> torch.Tensor:
    """Scores as the image-classification pipeline gives them: sigmoid for multi-label (or one label), softmax for
    single-label, the logits for regression."""
    problem_type, num_labels = model.config.problem_type, model.config.num_labels
    if problem_type == "regression":
        return logits
    if problem_type == "multi_label_classification" or num_labels == 1:
        return logits.sigmoid()
    return logits.softmax(dim=-1)


def explain_figure(model, pixel_values: torch.Tensor, path, image=None, targets=None, rollout: bool = True,
                   n_steps: int = 16) -> Path:
    """Write one figure for one image: a panel per finding (the finding's heatmap over the radiograph, titled with the finding and
    its score, from `finding_heatmaps`) and, with `rollout`, the attention rollout panel (when the model runs eager attention).

    pixel_values: (1, 3, H, W) as the image processor gives them. image: the radiograph to draw under the maps
        (an (H, W) array in [0, 1] at the input's size); default: `pixel_values` de-normalised.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"explain_figure: expected pixel_values of one image, (1, 3, H, W); found "
                         f"{tuple(pixel_values.shape)}.")
    targets = list(range(model.config.num_labels)) if targets is None else list(targets)
    with torch.no_grad():
        scores = finding_scores(model, model(pixel_values=pixel_values).logits)[0]
    maps = finding_heatmaps(model, pixel_values, targets, n_steps)[0]
    panels = [(model.config.id2label[t], f"{scores[t].item():.3f}", maps[i].numpy()) for i, t in enumerate(targets)]
    if rollout and model.config._attn_implementation == "eager":
        panels.append(("attention rollout", "all findings", attention_rollout(model, pixel_values)[0].numpy()))
    if image is None:
        mean, std = 0.4978, 0.2449
        image = np.clip(pixel_values[0, 0].float().numpy() * std + mean, 0.0, 1.0)
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (name, score, heatmap) in zip(axes.flat, panels):
        axis.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        axis.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0)
        axis.set_title(f"{name}: {score}", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


__all__ = ["attention_rollout", "explain_figure", "finding_heatmaps", "finding_scores", "require_captum"]
