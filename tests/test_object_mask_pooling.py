"""MODEL.HANDOBJ.OBJECT.MASK_POOLING "released": the object mask grid of the released training
(``dataset/ho3d.py``: PIL ``crop`` to the object box, ``resize((32, 32), NEAREST)``), checked
against PIL itself on random masks and boxes, some reaching outside the image."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import BitMasks, Boxes, Instances
from PIL import Image

from handobj_d2.config import add_handobj_config
from handobj_d2.modeling.object_head import VotingObjectHead, released_mask_cells


def pil_cells(mask, box, resolution):
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    cropped = image.crop(tuple(float(v) for v in box))
    return np.asarray(cropped.resize((resolution, resolution), Image.NEAREST)) != 0


def test_released_mask_cells_equal_pil():
    rng = np.random.default_rng(0)
    size, resolution = 96, 32
    masks, boxes = [], []
    for _ in range(40):
        masks.append(rng.random((size, size)) < 0.5)
        low = rng.uniform(-20, size - 10, 2)
        side = rng.uniform(5, 90, 2)
        boxes.append(np.concatenate([low, low + side]))
    boxes[0] = np.array([10.5, 11.5, 43.5, 60.25])  # halves: PIL rounds half to even
    expected = np.stack([pil_cells(m, b, resolution) for m, b in zip(masks, boxes)])
    boxes = torch.tensor(np.stack(boxes), dtype=torch.float32)
    got = released_mask_cells(torch.from_numpy(np.stack(masks)), boxes, resolution)
    assert (got.numpy() == expected).all()


def test_voting_head_mask_pooling_key():
    cfg = get_cfg()
    add_handobj_config(cfg)
    cfg.MODEL.HANDOBJ.OBJECT.MASK_POOLING = "released"
    head = VotingObjectHead(cfg, 8)
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 8:24, 8:24] = True  # the object box's top-left quarter
    pair = Instances((64, 64), gt_object_masks=BitMasks(mask),
                     gt_object_boxes=Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0]])))  # fmt: skip
    cells = head.mask_cells(pair, 4)[0]
    assert cells.tolist() == [[True, True, False, False], [True, True, False, False],
                              [False] * 4, [False] * 4]  # fmt: skip
    cfg.MODEL.HANDOBJ.OBJECT.MASK_POOLING = "nearest"
    with pytest.raises(ValueError, match="MASK_POOLING"):
        VotingObjectHead(cfg, 8)
