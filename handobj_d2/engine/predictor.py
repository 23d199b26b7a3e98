"""HandObjectPredictor: Detectron2's DefaultPredictor for the hand-object model.

One call takes a BGR image of any size and returns the model output of docs/design.md ("Model
output") in the image's pixels, plus ``instances.pred_root3d``. The model sees a square
``INPUT.HANDOBJ.CROP_SIZE`` crop of the fused hand/object box enlarged ``INPUT.HANDOBJ.CROP_SCALE``
times (the benchmarks' protocol), made by the test-time ``HandObjectDatasetMapper`` (the one
implementation of the crop), so without a given hand box it runs twice: first on the whole
image (letterboxed into the crop) to detect the hand and the object, then on the crop around
them.
"""

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from ..data.dataset_mapper import HandObjectDatasetMapper
from ..geometry import (
    PALM_JOINTS,
    box_control_points,
    default_intrinsics,
    estimate_root_translation,
)
from ..modeling import hand_object_detections


class HandObjectPredictor:
    """Load a model from ``cfg`` (MODEL.WEIGHTS) and predict on single images or batches.

    Args:
        cfg: a handobj_d2 config (handobj_d2.engine.setup_cfg).
        object_models: optional dict object name -> {"points": (N, 3) m, object frame}, used to
            find the 3D control points of ``object_name``; defaults to the ``object_models``
            metadata of the first dataset of DATASETS.TEST, if it has some.
    """

    def __init__(self, cfg, object_models=None):
        self.cfg = cfg.clone()
        # Without boxes the model detects; given boxes are passed as ``detected_instances``.
        self.cfg.defrost()
        self.cfg.MODEL.HANDOBJ.INFERENCE_BOXES = "detected"
        self.cfg.freeze()
        self.model = build_model(self.cfg)
        self.model.eval()
        DetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.crop_size = cfg.INPUT.HANDOBJ.CROP_SIZE
        self.crop_scale = cfg.INPUT.HANDOBJ.CROP_SCALE
        self._mappers = {}
        self._object_models = object_models
        self.has_trained_detector = cfg.MODEL.HANDOBJ.HAS_TRAINED_DETECTOR

    @property
    def hand_faces(self):
        """(1538, 3) int64 numpy: the faces of the model's MANO hand mesh."""
        return self.model.roi_heads.hand_head.mesh_head.hand_layer.faces.cpu().numpy()

    @property
    def object_models(self):
        if self._object_models is None and self.cfg.DATASETS.TEST:
            metadata = MetadataCatalog.get(self.cfg.DATASETS.TEST[0])
            self._object_models = metadata.get("object_models", None)
        return self._object_models or {}

    def control_points(self, object_name):
        """The 21 control points (21, 3) m of a known object (its model's bounding box)."""
        models = self.object_models
        if object_name not in models:
            raise KeyError(
                f"unknown object {object_name!r}: not among the object models "
                f"{sorted(models) or '(none loaded)'}; pass control_points3d instead"
            )
        points = np.asarray(models[object_name]["points"], dtype=np.float64)
        return box_control_points(np.stack([points.min(0), points.max(0)]))

    def __call__(self, image, camera_K=None, hand_box=None, object_box=None, object_name=None,
                 control_points3d=None):  # fmt: skip
        """Predict on one image.

        Args:
            image: (H, W, 3) uint8 BGR (OpenCV's order).
            camera_K: (3, 3) px intrinsics; ``geometry.default_intrinsics`` if None.
            hand_box, object_box: [x1, y1, x2, y2] px. A given hand box skips the detection
                pass; ``object_box`` None then means a hand without an object. Without a hand
                box the detected pair's boxes are used (a detector is then required:
                MODEL.HANDOBJ.HAS_TRAINED_DETECTOR).
            object_name / control_points3d (21, 3) m: the object, for its 6-DoF pose (PnP).

        Returns:
            dict with ``instances`` (one row per hand-object pair, docs/design.md "Model
            output") and ``detections`` in the image's pixels; ``instances.pred_root3d``
            (K, 3) m is the wrist in the OpenCV camera frame (least squares from the palm's
            joints2d and joints3d, which finger bending does not change;
            geometry.PALM_JOINTS), so ``joints3d + root3d[:, None]`` are camera-frame joints.
        """
        request = {
            "image": image,
            "camera_K": camera_K,
            "hand_box": hand_box,
            "object_box": object_box,
            "object_name": object_name,
            "control_points3d": control_points3d,
        }
        return self.predict_batch([request])[0]

    @torch.no_grad()
    def predict_batch(self, requests):
        """Predict on several images at once; ``requests`` are dicts with the arguments of
        ``__call__`` (only ``image`` required). Returns one output dict per request."""
        requests = [self._complete(r) for r in requests]
        to_detect = [r for r in requests if r["hand_box"] is None]
        if to_detect and not self.has_trained_detector:
            raise ValueError(
                "this model has no trained detector (MODEL.HANDOBJ.HAS_TRAINED_DETECTOR False, "
                "e.g. the authors' released weights): give hand_box (and object_box)"
            )
        for request, output in zip(to_detect, self._run(to_detect, None)):
            request["output"] = output  # the answer when no hand is found
            pairs = output["instances"]
            if len(pairs):
                request["hand_box"] = pairs.pred_boxes.tensor[0].cpu().numpy()
                request["object_box"] = (
                    pairs.pred_object_boxes.tensor[0].cpu().numpy()
                    if bool(pairs.pred_has_object[0])
                    else None
                )
        found = [r for r in requests if r["hand_box"] is not None]
        for request, output in zip(found, self._run(found, self.crop_scale)):
            if "output" in request:  # keep the detector's view of the whole image and scores
                detected = request["output"]
                output["detections"] = detected["detections"]
                pairs = output["instances"]
                pairs.scores = detected["instances"].scores[:1]
                pairs.object_scores = detected["instances"].object_scores[:1]
            request["output"] = output
        return [r["output"] for r in requests]

    def _complete(self, request):
        image = request["image"]
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image must be an (H, W, 3) BGR uint8 array, got {getattr(image, 'shape', image)}"
            )
        height, width = image.shape[:2]
        request = dict(request)
        K = request.get("camera_K")
        request["camera_K"] = default_intrinsics(width, height) if K is None else np.asarray(K)
        points = request.get("control_points3d")
        if points is None and request.get("object_name"):
            points = self.control_points(request["object_name"])
        request["control_points3d"] = points
        for key in ("hand_box", "object_box"):
            request.setdefault(key, None)
        return request

    def mapper(self, crop_scale=None):
        """The test-time HandObjectDatasetMapper of this config, with another crop scale
        when given."""
        crop_scale = self.crop_scale if crop_scale is None else float(crop_scale)
        if crop_scale not in self._mappers:
            self._mappers[crop_scale] = HandObjectDatasetMapper(
                self.cfg, is_train=False, crop_scale=crop_scale
            )
        return self._mappers[crop_scale]

    def model_input(self, request, crop_scale, view=None):
        """The model's input dict for a request (``image``, ``camera_K``, ``hand_box``,
        optional ``object_box``, ``control_points3d``), made by the test-time mapper: the
        square crop of the fused box enlarged ``crop_scale`` times (of the whole image, with
        no boxes, when ``crop_scale`` is None), with the intrinsics and boxes moved into the
        crop's pixels.

        ``view``: optional (3, 3) pixel transform applied to the image before the crop (the
        teacher's transformed views); the input then has no intrinsics (see the mapper).
        """
        record = {"camera_K": request.get("camera_K")}
        if crop_scale is not None:
            for key in ("hand_box", "object_box"):
                if request.get(key) is not None:
                    record[key] = request[key]
        out = self.mapper(crop_scale).map(record, request["image"], view=view)
        for key in ("instances", "hand_object"):  # the empty ground truth of a bare record
            del out[key]
        if request.get("control_points3d") is not None:
            out["control_points3d"] = torch.as_tensor(
                np.asarray(request["control_points3d"], dtype=np.float32)
            )
        return out

    def _run(self, requests, crop_scale):
        """Model outputs on the whole images (``crop_scale`` None: detected boxes) or on the
        crops around the requests' boxes (given as ``detected_instances``)."""
        if not requests:  # every image had a given hand box, or none had a hand
            return []
        inputs = [self.model_input(r, crop_scale) for r in requests]
        given = None
        if crop_scale is not None:
            size = (self.crop_size, self.crop_size)
            given = [
                hand_object_detections(size, x["hand_box"], x.get("object_box")) for x in inputs
            ]
        outputs = self.model.inference(inputs, detected_instances=given)
        for request, output in zip(requests, outputs):
            pairs = output["instances"]
            pairs.pred_root3d = root_translations(pairs, request["camera_K"])
        return outputs


def root_translations(pairs, camera_K):
    """Wrist positions (K, 3) m, OpenCV camera frame, of the hands of ``pairs`` (Instances with
    ``pred_joints2d`` (K, 21, 2) px and root-relative ``pred_joints3d`` (K, 21, 3) m) seen through
    ``camera_K`` (3, 3): least squares on the palm joints (geometry.PALM_JOINTS), whose layout
    finger bending does not change, so that wrongly bent fingers do not move the hand."""
    root = estimate_root_translation(
        pairs.pred_joints2d.cpu().numpy(),
        pairs.pred_joints3d.cpu().numpy(),
        camera_K,
        joints=PALM_JOINTS,
    )
    device = pairs.pred_joints2d.device
    return torch.as_tensor(root, dtype=torch.float32, device=device).reshape(-1, 3)
