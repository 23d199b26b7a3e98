"""Test-time augmentation for HandObjectRCNN: ``HandObjectRCNNWithTTA``, Detectron2's
GeneralizedRCNNWithTTA (the detector's boxes over resized and flipped copies of the input,
merged by NMS), then the pose heads once, on the input itself, on the hand-object pair taken
from the merged detections. (Data distillation's averaging over transformed views of a frame
is ``semi.TransformAveraging``.)
"""

from detectron2.modeling import GeneralizedRCNNWithTTA


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

