"""Why-figures: the findings' heatmaps point at the finding when the model learned it, and not when it could not."""

import numpy as np
import pytest
import torch

from conftest import tiny_config


pytest.importorskip("captum", reason="the heatmaps need captum: pip install \"mrm-hf[explain]\"")

from mrm_hf import MRMForImageClassification  # noqa: E402
from mrm_hf.explain import attention_rollout, explain_figure, finding_heatmaps  # noqa: E402


SIZE, RADIUS = 32, 4.5


def synthetic_radiographs(count: int, rng: np.random.Generator):
    """Cartoon chests (two dark lungs, a vertical ramp, noise); every other one has the finding: a bright disc of
    RADIUS px at a random place. Returns normalised pixel values, 0/1 labels and the discs' centres (x, y)."""
    rows, columns = np.mgrid[:SIZE, :SIZE]
    images, labels, centres = [], [], []
    for index in range(count):
        image = 0.35 + 0.15 * rows / SIZE + rng.normal(0.0, 0.05, (SIZE, SIZE))
        for lung_x in (0.3 * SIZE, 0.7 * SIZE):
            image -= 0.15 * (((columns - lung_x) / (0.17 * SIZE)) ** 2 + ((rows - SIZE / 2) / (0.35 * SIZE)) ** 2 < 1)
        centre = rng.uniform(RADIUS, SIZE - RADIUS, 2)
        positive = index % 2 == 0
        if positive:
            image[(columns - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= RADIUS**2] += 0.45
        images.append(np.clip(image, 0.0, 1.0))
        labels.append(float(positive))
        centres.append(centre)
    gray = torch.tensor(np.stack(images), dtype=torch.float32)[:, None].repeat(1, 3, 1, 1)
    return (gray - 0.4978) / 0.2449, torch.tensor(labels), np.stack(centres)


def train_classifier(pixel_values, labels, steps=80, seed=0):
    torch.manual_seed(seed)
    config = tiny_config(patch_size=4, num_labels=1, id2label={0: "blob"}, label2id={"blob": 0},
                         problem_type="multi_label_classification", attn_implementation="eager")
    model = MRMForImageClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(pixel_values), (32,), generator=generator)
        loss = model(pixel_values=pixel_values[batch], labels=labels[batch, None]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def peak_in_finding_rate(maps: torch.Tensor, centres: np.ndarray) -> float:
    """The fraction of maps whose highest pixel lies inside its image's disc."""
    hits = []
    for heatmap, (x, y) in zip(maps, centres):
        row, column = np.unravel_index(int(heatmap.argmax()), tuple(heatmap.shape))
        hits.append((column - x) ** 2 + (row - y) ** 2 <= RADIUS**2)
    return float(np.mean(hits))


@pytest.fixture(autouse=True)
def one_thread():
    """The models are tiny: one thread is faster than several, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def blob_data():
    rng = np.random.default_rng(0)
    return synthetic_radiographs(512, rng), synthetic_radiographs(96, rng)


def test_heatmap_peak_falls_on_the_finding_only_when_the_model_learned_it(blob_data):
    (train_x, train_y, _), (test_x, test_y, test_centres) = blob_data
    positives = test_y == 1
    rates = {}
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(1))]
    for name, labels in (("true labels", train_y), ("shuffled labels", shuffled)):
        model = train_classifier(train_x, labels)
        maps = finding_heatmaps(model, test_x[positives])[:, 0]
        rates[name] = peak_in_finding_rate(maps, test_centres[positives.numpy()])
    print(f"heatmap peak inside the finding, held-out positives: {rates}")
    assert rates["true labels"] >= 0.9, rates
    assert rates["shuffled labels"] <= rates["true labels"] - 0.3, rates


def test_rollout_and_figure(tmp_path, blob_data):
    _, (test_x, _, _) = blob_data
    model = MRMForImageClassification(tiny_config(patch_size=4, num_labels=2, attn_implementation="eager")).eval()
    rollout = attention_rollout(model, test_x[:3])
    assert rollout.shape == (3, SIZE, SIZE) and float(rollout.min()) == 0.0 and float(rollout.max()) == 1.0
    path = explain_figure(model, test_x[:1], tmp_path / "why.png", n_steps=4)
    from PIL import Image

    with Image.open(path) as figure:
        assert figure.width > 400  # two finding panels and the rollout panel side by side
    model.set_attn_implementation("sdpa")
    with pytest.raises(ValueError, match="attn_implementation=\"eager\""):
        attention_rollout(model, test_x[:1])
