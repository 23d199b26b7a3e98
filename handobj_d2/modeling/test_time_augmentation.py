"""Test-time augmentation for HandObjectRCNN.

``HandObjectRCNNWithTTA``: Detectron2's GeneralizedRCNNWithTTA (the detector's boxes over
resized and flipped copies of the input, merged by NMS), then the pose heads once, on the input
itself, on the hand-object pair taken from the merged detections.

``HandObjectTTA``: the hand predictions averaged over transformed views of a frame (data
distillation, Radosavovic et al. 2018), as GeneralizedRCNNWithTTA averages detections over
augmented inputs.

Each view is a model input whose ``image_to_input`` maps the frame's pixels to the view's (any
affine: crop, scale, in-plane rotation), with the pair's ``hand_box`` and ``object_box`` in the
view's pixels, and the camera roll Rz (3, 3) that the view's in-plane rotation amounts to. 2D
outputs come back in the frame's pixels through the model's postprocessing (the inverse of
``image_to_input``); root-relative 3D joints predicted in a rolled view, X', are X = Rz^T X' in
the frame's camera.
"""

import torch
from detectron2.modeling import GeneralizedRCNNWithTTA
from torch import nn

from .roi_heads import hand_object_detections


class HandObjectRCNNWithTTA(GeneralizedRCNNWithTTA):
    """GeneralizedRCNNWithTTA(cfg, model, tta_mapper=None, batch_size=3) for a HandObjectRCNN.

    The augmented copies (``DatasetMapperTTA``: TEST.AUG.MIN_SIZES, MAX_SIZE, FLIP) serve the
    detector only, with the pose branch off (``roi_heads.pose_on``, as Detectron2 turns off
    ``mask_on``): their hands and objects are mapped back to the input's pixels and merged
    (NMS per class). The pose branch then runs once, on the input as given (no flip: a
    mirrored right hand is a left one, which the MANO head does not model). Returns per input
    the model's output (``{"instances", "detections"}``, original image's pixels). The model
    must detect (MODEL.HANDOBJ.INFERENCE_BOXES "detected"): given boxes would not follow the
    copies."""

    def __init__(self, cfg, model, tta_mapper=None, batch_size=3):
        super().__init__(cfg, model, tta_mapper, batch_size)
        if self.model.inference_boxes != "detected":
            raise ValueError(
                "HandObjectRCNNWithTTA augments the detector: it needs "
                "MODEL.HANDOBJ.INFERENCE_BOXES 'detected', got "
                f"{self.model.inference_boxes!r}"
            )

    def _inference_one_image(self, input):
        # The copies' transforms start from the model input (a crop of the original image, say),
        # not from "height" x "width": the merged boxes are in model-input pixels.
        size = tuple(input["image"].shape[1:])
        view = {**input, "height": size[0], "width": size[1]}
        augmented_inputs, tfms = self._get_augmented_inputs(view)
        with self._turn_off_roi_heads(["pose_on"]):
            boxes, scores, classes = self._get_augmented_boxes(augmented_inputs, tfms)
        merged = self._merge_detections(boxes, scores, classes, size)
        return self.model.inference([input], [merged])[0]


# The averaged fields: 2D in the frame's pixels, 3D root-relative in its camera frame.
AVERAGED_FIELDS = ("pred_joints2d", "pred_joints3d", "pred_mano_shape")


class HandObjectTTA(nn.Module):
    """``forward(views)``: per frame a list of (model input, roll (3, 3)) views -> per frame a
    dict of AVERAGED_FIELDS, each with one row: ``pred_joints2d`` (1, 21, 2) px,
    ``pred_joints3d`` (1, 21, 3) m root-relative, ``pred_mano_shape`` (1, 10)."""

    def __init__(self, model, batch_size=8):
        """
        Args:
            model: a HandObjectRCNN in eval mode.
            batch_size (int): views per forward pass.
        """
        super().__init__()
        self.model = model
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def forward(self, views):
        flat = [view for frame in views for view in frame]
        outputs = []
        for start in range(0, len(flat), self.batch_size):
            inputs = [record for record, _ in flat[start : start + self.batch_size]]
            given = [
                hand_object_detections(
                    tuple(x["image"].shape[-2:]), x["hand_box"], x.get("object_box")
                )
                for x in inputs
            ]
            outputs += self.model.inference(inputs, detected_instances=given)
        averaged, start = [], 0
        for frame in views:
            fields = {name: [] for name in AVERAGED_FIELDS}
            for (_, roll), output in zip(frame, outputs[start : start + len(frame)]):
                pair = output["instances"]
                joints3d = pair.pred_joints3d - pair.pred_joints3d[:, :1]
                roll = torch.as_tensor(roll, dtype=joints3d.dtype, device=joints3d.device)
                fields["pred_joints3d"].append(joints3d @ roll)  # rows: X = Rz^T X'
                fields["pred_joints2d"].append(pair.pred_joints2d)
                fields["pred_mano_shape"].append(pair.pred_mano_shape)
            averaged.append({k: torch.stack(v).mean(0) for k, v in fields.items()})
            start += len(frame)
        return averaged
