"""Dice and IoU of binary segmentation masks, with the published per-image Dice of the MRM SIIM-ACR evaluation.

- `dice`: the published `medDice` (the metric of the published MMSegmentation config): each image's Dice
  2|P∩T| / (|P| + |T|), an image with an empty true mask scoring 1 if the prediction is empty and 0 otherwise; the
  mean over all images.
- `dice_positive_images`: the same mean over the images whose true mask is not empty (None when there are none).
- `positive_dice` and `positive_iou`: Dice and IoU of the positive class over all pixels of all images together
  (MMSegmentation's per-class mDice and mIoU); None when neither masks nor predictions have a positive pixel.

Inputs are compact so that thousands of 512 x 512 masks pass through `evaluate` in a second: each mask is the bytes
of `numpy.packbits` of its pixels, flattened in any fixed order (`mrm_hf.metrics.pack_masks`). A prediction and
its reference must have been packed from masks of one size.
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{zhou2023mrm,
  title     = {Advancing Radiograph Representation Learning with Masked Record Modeling},
  author    = {Zhou, Hong-Yu and Lian, Chenyu and Wang, Liansheng and Yu, Yizhou},
  booktitle = {International Conference on Learning Representations},
  year      = {2023}
}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: one `numpy.packbits` byte string per image, the predicted 0/1 mask.
    references: one byte string per image, the true 0/1 mask, packed the same way.
Returns:
    dice, dice_positive_images, positive_dice, positive_iou, num_images, num_empty_references.
"""


class MaskDice(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("binary"),
                                        "references": datasets.Value("binary")}),
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("The predictions: expected at least one image; found none.")
        intersections, predicted, true = [], [], []
        for index, (prediction, reference) in enumerate(zip(predictions, references)):
            if len(prediction) != len(reference):
                raise ValueError(f"Image {index}: expected the prediction and the reference packed from masks of one "
                                 f"size; found {len(prediction)} and {len(reference)} bytes.")
            p = np.unpackbits(np.frombuffer(prediction, dtype=np.uint8)).astype(bool)
            t = np.unpackbits(np.frombuffer(reference, dtype=np.uint8)).astype(bool)
            intersections.append(int(np.count_nonzero(p & t)))
            predicted.append(int(np.count_nonzero(p)))
            true.append(int(np.count_nonzero(t)))
        intersections, predicted, true = map(np.asarray, (intersections, predicted, true))
        empty = true == 0
        per_image = np.where(
            empty, (predicted == 0).astype(np.float64), 2.0 * intersections / np.maximum(predicted + true, 1)
        )
        union = predicted.sum() + true.sum() - intersections.sum()
        return {
            "dice": float(per_image.mean()),
            "dice_positive_images": float(per_image[~empty].mean()) if (~empty).any() else None,
            "positive_dice": float(2.0 * intersections.sum() / (predicted.sum() + true.sum())) if union else None,
            "positive_iou": float(intersections.sum() / union) if union else None,
            "num_images": int(len(per_image)),
            "num_empty_references": int(empty.sum()),
        }
