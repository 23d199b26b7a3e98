"""The project's config node. ``add_handobj_config(cfg)`` adds every key this package reads.

Units and frames: image coordinates in pixels, 3D in metres in the OpenCV camera frame
(x right, y down, z forward) unless a key says otherwise.
"""

import math

from detectron2.config import CfgNode as CN


def add_handobj_config(cfg):
    """Add the hand-object keys to a Detectron2 config (in place) and return it."""
    _C = cfg

    # Starting point. This package ships no weights (MODEL.WEIGHTS ""), so by default every layer
    # trains from its random initialisation: BatchNorm with batch statistics and nothing frozen
    # (Detectron2's defaults, FrozenBN and FREEZE_AT 2, are for MSRA ImageNet weights: set them
    # back with MODEL.WEIGHTS "detectron2://ImageNet/MSRA/R-50.pkl"). setup_cfg refuses a config
    # that would freeze randomly initialised layers.
    _C.MODEL.RESNETS.NORM = "BN"
    _C.MODEL.BACKBONE.FREEZE_AT = 0

    # The model itself (MODEL.META_ARCHITECTURE "HandObjectRCNN", MODEL.ROI_HEADS.NAME
    # "HandObjectROIHeads", two classes) is chosen in configs/Base-HandObject-RCNN.yaml.
    _C.MODEL.HANDOBJ = CN()
    # Feature map the pose heads pool from (P2, stride 4).
    _C.MODEL.HANDOBJ.IN_FEATURE = "p2"
    _C.MODEL.HANDOBJ.POOLER_RESOLUTION = 32
    _C.MODEL.HANDOBJ.POOLER_SAMPLING_RATIO = 2
    _C.MODEL.HANDOBJ.POOLER_TYPE = "ROIAlignV2"
    # Where the pose heads get their boxes at inference: "given" (benchmark protocol, boxes come
    # with the input) or "detected" (the best hand and the object it interacts with most among
    # the detections above MODEL.ROI_HEADS.SCORE_THRESH_TEST).
    _C.MODEL.HANDOBJ.INFERENCE_BOXES = "given"
    # Train the RPN + box head (hand/object detector) together with the pose heads.
    _C.MODEL.HANDOBJ.DETECTOR_ON = True
    # Run the pose branch (hand mesh, object control points and pose), as MODEL.MASK_ON runs the
    # mask head; False: the detector alone (HandObjectRCNNWithTTA's augmented copies).
    _C.MODEL.HANDOBJ.POSE_ON = True
    # False for weights without a trained detector (the authors' released checkpoint, converted
    # by tools/convert_released_checkpoint.py): the predictor then needs given hand and object
    # boxes and refuses to run the untrained detector.
    _C.MODEL.HANDOBJ.HAS_TRAINED_DETECTOR = True
    # Turn every BatchNorm2d of the model (backbone, FPN, heads) into FrozenBatchNorm2d: the
    # statistics and affine parameters of MODEL.WEIGHTS stay fixed. For fine-tuning with batches
    # much smaller than the checkpoint's (e.g. a student on a CPU from a teacher trained on a GPU),
    # whose per-batch statistics would otherwise replace the checkpoint's.
    _C.MODEL.HANDOBJ.FROZEN_BN = False

    # Contextual reasoning between object (query) and intersection (key) features.
    _C.MODEL.HANDOBJ.CR = CN()
    # A class in CONTEXTUAL_REASONING_REGISTRY or its short name: "transformer" | "nonlocal" | "none"
    _C.MODEL.HANDOBJ.CR.NAME = "transformer"
    _C.MODEL.HANDOBJ.CR.REDUCED_CHANNELS = 128  # nonlocal: query/key/embedding width
    _C.MODEL.HANDOBJ.CR.NUM_HEADS = 1  # transformer
    _C.MODEL.HANDOBJ.CR.MLP_RATIO = 4  # transformer
    _C.MODEL.HANDOBJ.CR.DEPTH = 1  # transformer

    _C.MODEL.HANDOBJ.HAND = CN()
    # Hand decoder (modeling/hand_head.py HAND_HEAD_REGISTRY).
    _C.MODEL.HANDOBJ.HAND.NAME = "HandHead"
    _C.MODEL.HANDOBJ.HAND.HOURGLASS_STACKS = 1
    _C.MODEL.HANDOBJ.HAND.HOURGLASS_DEPTH = 4
    _C.MODEL.HANDOBJ.HAND.HOURGLASS_PLANES = 128
    # Width of the mesh-regression residual encoder and its hidden FC layers (released code:
    # the flattened 2x2 map of MESH_CHANNELS, 1024 values, -> 1024 -> 512).
    _C.MODEL.HANDOBJ.HAND.MESH_CHANNELS = 256
    _C.MODEL.HANDOBJ.HAND.MESH_FC_DIMS = [1024, 512]
    # Scale of the mesh regression's gradient flowing back into the heatmaps, the hourglass and
    # the backbone (1: end to end, as released; 0: the 2D branch learns from its 2D losses only,
    # which lets a model trained from random weights learn the 2D joints at all).
    _C.MODEL.HANDOBJ.HAND.MESH_INPUT_GRADIENT = 1.0
    # joints2d_conf: heatmap probability within this many heatmap cells of the 2D joint.
    _C.MODEL.HANDOBJ.HAND.CONFIDENCE_RADIUS = 1.5

    _C.MODEL.HANDOBJ.OBJECT = CN()
    # Object decoder (modeling/object_head.py): "VotingObjectHead" (the paper's dense voting,
    # NUM_CONV_BLOCKS, OFFSET_SCALE and VOTE_* keys) or "HeatmapObjectHead" (a heatmap per
    # control point, HOURGLASS_* and CONFIDENCE_RADIUS keys).
    _C.MODEL.HANDOBJ.OBJECT.NAME = "VotingObjectHead"
    _C.MODEL.HANDOBJ.OBJECT.NUM_CONV_BLOCKS = 3
    # A cell's prediction = its centre + OFFSET_SCALE x the predicted offset, in object-box units.
    _C.MODEL.HANDOBJ.OBJECT.OFFSET_SCALE = 0.1
    # Voting: per control point the TOPK most confident cells above CONF_THRESH feed PnP.
    _C.MODEL.HANDOBJ.OBJECT.VOTE_TOPK = 10
    _C.MODEL.HANDOBJ.OBJECT.VOTE_CONF_THRESH = 0.5
    # Object mask of the voting loss on the R x R grid: "roialign" (ROIAlign of the mask on the
    # object box, cells >= 0.5) or "released" (the released training's: the mask cropped to the
    # box rounded to whole pixels, then nearest resize as PIL; object_head.released_mask_cells).
    _C.MODEL.HANDOBJ.OBJECT.MASK_POOLING = "roialign"
    _C.MODEL.HANDOBJ.OBJECT.MIN_PNP_POINTS = 6
    _C.MODEL.HANDOBJ.OBJECT.PNP_REPROJ_ERROR = 8.0  # pixels, RANSAC inlier threshold
    _C.MODEL.HANDOBJ.OBJECT.PNP_ITERATIONS = 100
    _C.MODEL.HANDOBJ.OBJECT.HOURGLASS_STACKS = 1
    _C.MODEL.HANDOBJ.OBJECT.HOURGLASS_DEPTH = 4
    _C.MODEL.HANDOBJ.OBJECT.HOURGLASS_PLANES = 128
    _C.MODEL.HANDOBJ.OBJECT.CONFIDENCE_RADIUS = 1.5  # heatmap cells, as HAND.CONFIDENCE_RADIUS

    # Loss weights (released code). Pseudo-labels carry 3D joints only and use PSEUDO_*.
    _C.MODEL.HANDOBJ.LOSS = CN()
    _C.MODEL.HANDOBJ.LOSS.JOINTS2D = 1e2
    # Auxiliary heatmap supervision (not in the released code, hence 0): KL divergence from a
    # Gaussian of HEATMAP_SIGMA heatmap cells at each labelled 2D joint to the predicted heatmap.
    # Soft-argmax alone trains slowly from random weights; the tiny synthetic config turns it on.
    _C.MODEL.HANDOBJ.LOSS.HEATMAP = 0.0
    _C.MODEL.HANDOBJ.LOSS.HEATMAP_SIGMA = 1.0
    _C.MODEL.HANDOBJ.LOSS.VERTICES3D = 1e4
    _C.MODEL.HANDOBJ.LOSS.JOINTS3D = 1e4
    _C.MODEL.HANDOBJ.LOSS.MANO_POSE = 10.0
    _C.MODEL.HANDOBJ.LOSS.MANO_SHAPE = 0.1
    _C.MODEL.HANDOBJ.LOSS.PSEUDO_JOINTS3D = 1e4
    _C.MODEL.HANDOBJ.LOSS.SHAPE_REGULARIZER = 1e2
    _C.MODEL.HANDOBJ.LOSS.POSE_REGULARIZER = 1.0
    _C.MODEL.HANDOBJ.LOSS.OBJECT_COORDS = 500.0
    _C.MODEL.HANDOBJ.LOSS.OBJECT_CONFIDENCE = 100.0
    # HeatmapObjectHead: KL to a Gaussian of HEATMAP_SIGMA cells, L1 of the soft-argmax points
    # (a tenth of the hand's 2D weights, so that the object's gradients in the shared backbone
    # do not crowd out the hand's).
    _C.MODEL.HANDOBJ.LOSS.OBJECT_HEATMAP = 1.0
    _C.MODEL.HANDOBJ.LOSS.OBJECT_POINTS = 10.0

    # MANO. An empty MODEL_PATH selects the project's synthetic MANO-format hand (tests, demo).
    _C.MODEL.MANO = CN()
    _C.MODEL.MANO.MODEL_PATH = ""  # path to MANO_RIGHT.pkl (https://mano.is.tue.mpg.de)
    # Vertex ids of the five fingertips (thumb, index, middle, ring, pinky). manopth's ids;
    # the HO3D-trained released model uses [728, 353, 442, 576, 694].
    _C.MODEL.MANO.FINGERTIP_VERTICES = [745, 317, 444, 556, 673]

    # Input crop and training augmentation (HandObjectDatasetMapper).
    _C.INPUT.HANDOBJ = CN()
    _C.INPUT.HANDOBJ.CROP_SIZE = 512  # pixels, square model input
    _C.INPUT.HANDOBJ.CROP_SCALE = 1.5  # crop box = fused hand/object box enlarged by this factor
    _C.INPUT.HANDOBJ.ROTATION = math.pi  # radians, uniform in [-ROTATION, ROTATION]
    _C.INPUT.HANDOBJ.SCALE_JITTER = 0.2
    _C.INPUT.HANDOBJ.CENTER_JITTER = 0.1  # fraction of the crop size
    # brightness, contrast, saturation, hue
    _C.INPUT.HANDOBJ.COLOR_JITTER = [0.5, 0.5, 0.5, 0.15]
    _C.INPUT.HANDOBJ.BLUR_MAX_SIGMA = 0.5  # pixels, Gaussian blur sigma uniform in [0, max]
    # Training boxes and crop: "annotation" (the annotated boxes; crop = fused box x CROP_SCALE,
    # jittered) or "released" (the authors' training: hand box = box of the 2D joints x1.1,
    # object box = box of the projected control points, crop = union of both x1.5 clipped to the
    # image, then jittered; handobj_d2/data/released_protocol.py).
    _C.INPUT.HANDOBJ.TRAIN_BOXES = "annotation"
    # Random draws and image operations of training (data/augmentation.py
    # HANDOBJ_AUGMENTATION_REGISTRY): "default" (uniform scale jitter, centre jitter of the
    # jittered side, OpenCV warp with bilinear pixel-centre resampling, colour then blur) or
    # "released" (the authors': scale 1 + SCALE_JITTER N(0, 1) clipped, centre jitter of the
    # unjittered side, PIL warp (pixel corners, nearest), blur then colour operations in shuffled
    # order, torchvision's colour functions).
    _C.INPUT.HANDOBJ.AUGMENTATION = "default"
    # The 3D-joint target of samples with MANO labels: "annotation" (the record's joints3d) or
    # "mano" (the joints of MANO(gt pose, shape) with MODEL.MANO.FINGERTIP_VERTICES, as the
    # released training: the loss computes them from the sample's MANO labels).
    _C.INPUT.HANDOBJ.JOINTS3D_TARGET = "annotation"
    # Inference boxes and crop: "annotation" (the annotated boxes; crop = fused box x CROP_SCALE)
    # or "released" (the authors' evaluation: hand box x1.1, object box = projected control
    # points, their crop; handobj_d2/data/released_protocol.py).
    _C.INPUT.HANDOBJ.TEST_BOXES = "annotation"

    # Training records whose image, mask or annotation cannot be read (HandObjectDatasetMapper):
    # "fail" stops training with the file named; "skip" logs and counts them and trains on other
    # records, failing after MAX_BAD_SAMPLES distinct bad files (per data-loader process).
    _C.DATALOADER.HANDOBJ = CN()
    _C.DATALOADER.HANDOBJ.BAD_SAMPLE_POLICY = "fail"
    _C.DATALOADER.HANDOBJ.MAX_BAD_SAMPLES = 100

    # Schedule in epochs (as the released traineval.py): with EPOCHS > 0, setup_cfg sets
    # SOLVER.MAX_ITER = EPOCHS x iterations per epoch and SOLVER.STEPS every STEP_EPOCHS epochs
    # (SOLVER.GAMMA per step), an epoch being ceil(records of DATASETS.TRAIN / IMS_PER_BATCH)
    # iterations. EPOCHS 0 keeps SOLVER.STEPS / MAX_ITER as given.
    _C.SOLVER.HANDOBJ = CN()
    _C.SOLVER.HANDOBJ.EPOCHS = 0
    _C.SOLVER.HANDOBJ.STEP_EPOCHS = 10

    _C.SOLVER.OPTIMIZER = "ADAM"  # "ADAM" (released code) | "SGD"
    # One fused kernel updates every parameter (torch's ``fused=True``) instead of a Python loop
    # of small ops per parameter; same update up to rounding, faster on CPU and GPU.
    _C.SOLVER.FUSED = False

    # Evaluation.
    _C.TEST.HANDOBJ = CN()
    # Write pred.json for the HO3D challenge / offline scorer in the evaluator's output dir.
    _C.TEST.HANDOBJ.WRITE_PRED_JSON = True

    # Semi-supervised self-training (pseudo-labels from unlabeled videos).
    _C.SEMI = CN()
    # Datasets of pseudo-labels (register_pseudo_label_dataset) trained with DATASETS.TRAIN.
    _C.SEMI.PSEUDO_DATASETS = ()
    # pseudo_labels.json files (tools/generate_pseudo_labels.py) trained with DATASETS.TRAIN too;
    # the train loader registers each as a dataset named "pseudo_labels:<absolute path>".
    _C.SEMI.PSEUDO_LABEL_FILES = ()
    # Fraction of each training batch drawn from the pseudo-labeled datasets.
    _C.SEMI.PSEUDO_RATIO = 0.5
    # Multiplies every loss of a pseudo-labeled sample.
    _C.SEMI.PSEUDO_LOSS_WEIGHT = 1.0
    # Student initialisation (training with pseudo-labels): "teacher" (MODEL.WEIGHTS must be the
    # teacher's checkpoint) or "scratch" (random weights; MODEL.WEIGHTS is ignored).
    _C.SEMI.STUDENT_INIT = "teacher"
    # "filtered" (spatial-temporal consistency, the paper) or "distillation" (filters off,
    # predictions averaged over transforms of the frame; Radosavovic et al.).
    _C.SEMI.MODE = "filtered"
    _C.SEMI.BATCH_SIZE = 8  # frames per teacher forward pass
    # Filters. Every threshold is a config value; every score is recorded.
    _C.SEMI.FILTER = CN()
    # Filters applied in "filtered" mode (handobj_d2.semi.filters.PSEUDO_LABEL_FILTER_REGISTRY).
    _C.SEMI.FILTER.NAMES = ["detection", "consistency_2d3d", "temporal", "shape", "interaction"]
    _C.SEMI.FILTER.MIN_HAND_SCORE = 0.5
    _C.SEMI.FILTER.MIN_OBJECT_SCORE = 0.3
    # 2D-3D consistency: mean residual / hand box size after the least-squares scale+translation.
    _C.SEMI.FILTER.MAX_2D3D_RESIDUAL = 0.05
    # Temporal smoothness: mean root-aligned 3D joint distance (metres) to the neighbours.
    _C.SEMI.FILTER.TEMPORAL_WINDOW = 2
    _C.SEMI.FILTER.MAX_TEMPORAL_DISTANCE = 0.015
    # Shape stability: L2 distance of betas to the video median.
    _C.SEMI.FILTER.MAX_SHAPE_DEVIATION = 1.0
    # Interaction: hand and object boxes overlap or lie within this margin (fraction of the
    # hand box diagonal).
    _C.SEMI.FILTER.INTERACTION_MARGIN = 0.1
    # Data distillation: scales and in-plane rotations (degrees) the predictions average over.
    _C.SEMI.DISTILLATION_SCALES = [0.9, 1.0, 1.1]
    _C.SEMI.DISTILLATION_ROTATIONS = [-15.0, 0.0, 15.0]
    return cfg
