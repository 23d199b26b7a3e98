"""Data distillation's transform averaging (Radosavovic et al. 2018): the teacher's hand
predictions averaged over transformed views of one frame (``SEMI.MODE`` "distillation").

Each view is a model input whose ``image_to_input`` maps the frame's pixels to the view's (any
affine: crop, scale, in-plane rotation), with the pair's ``hand_box`` and ``object_box`` in the
view's pixels, and the camera roll Rz (3, 3) that the view's in-plane rotation amounts to. 2D
outputs come back in the frame's pixels through the model's postprocessing (the inverse of
``image_to_input``); root-relative 3D joints predicted in a rolled view, X', are X = Rz^T X' in
the frame's camera. ``teacher.py`` builds the views.
"""

import torch
from torch import nn

from ..modeling import hand_object_detections

# The averaged fields: 2D in the frame's pixels, 3D root-relative in its camera frame.
AVERAGED_FIELDS = ("pred_joints2d", "pred_joints3d", "pred_mano_shape")


class TransformAveraging(nn.Module):
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
