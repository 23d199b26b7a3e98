"""Convert the authors' released checkpoint (github.com/stevenlsw/Semi-Hand-Object,
``traineval.py --resume``) to this package's parameter names (``tools/convert_released_checkpoint.py``).

The released file is a ``torch.save`` of ``{"epoch", "network", "state_dict"}`` whose keys carry
``honet.module.`` (HOModel around a DataParallel HONet); any nesting under ``state_dict`` /
``model`` and any ``module.`` / ``honet.`` prefixes are accepted. Every released tensor is
accounted for: mapped to a parameter or buffer of the model built from
``configs/HO3D-v2/handobj_R50_FPN_released.yaml``, or dropped for a stated reason (the MANO
buffers, which come from MODEL.MANO.MODEL_PATH; constant grids and the OpenGL change of frame,
checked against the values the model uses; BatchNorm step counters of frozen norms). The object
head's output channels are reordered from the released control-point order to
``geometry.box_control_points``'s (``RELEASED_CONTROL_POINT_ORDER``); the heatmap channels from
HO3D's joint order to manopth's when asked (``joints2d_order``: the released code does not say
which order its 2D labels had).
Anything else fails loudly with the list of unmapped or missing keys.

The released network has no detector (RPN and box head): the converted model runs on given
hand and object boxes only.
"""

import re

import torch

from ..geometry import HO3D_TO_MANOPTH

# Model keys the released file cannot provide.
DETECTOR_PREFIXES = ("proposal_generator.", "roi_heads.box_head.", "roi_heads.box_predictor.")
HAND_LAYER_PREFIX = "roi_heads.hand_head.mesh_head.hand_layer."

_BACKBONE = "backbone."
_BOTTOM_UP = "backbone.bottom_up."
_HEATMAP = "roi_heads.hand_head.heatmap_head."
_MESH = "roi_heads.hand_head.mesh_head."
_OBJECT = "roi_heads.object_head."
_CR = "roi_heads.contextual_reasoning.blocks."

# Released pre-activation bottleneck / residual layer -> index in PreActBottleneck.body.
_PREACT = {"bn1": 0, "conv1": 2, "bn2": 3, "conv2": 5, "bn3": 6, "conv3": 8}
_ENCODER_RESIDUAL = {"bn": 0, "conv1": 2, "bn1": 3, "conv2": 5, "bn2": 6, "conv3": 8}
_HOURGLASS_BRANCH = {0: "skip", 1: "down", 2: "up", 3: "inner"}
_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

# The released control points (``dataset_util.get_bbox21_3d_from_dict``) are the box corners
# with x fastest and z slowest, then the edge midpoints in their own order, then the centre;
# ``geometry.box_control_points`` lists the corners with z fastest and the edges by axis. Our
# point j is their point RELEASED_CONTROL_POINT_ORDER[j]: the object head's output channels
# (confidence, x and y blocks of 21) are reordered so that the converted model predicts ours.
RELEASED_CONTROL_POINT_ORDER = (
    *(0, 4, 2, 6, 1, 5, 3, 7),  # corners
    *(11, 15, 10, 14, 8, 12, 9, 13, 17, 16, 19, 18),  # edge midpoints
    20,  # centre
)
_OBJECT_OUTPUT = ("obj_head.out_conv.weight", "obj_head.out_conv.bias")


class ReleasedCheckpointError(ValueError):
    """The file is not a released checkpoint this converter understands (message lists why)."""


def released_state_dict(checkpoint):
    """The flat released state dict of a loaded file: unwraps ``state_dict`` / ``model`` and
    strips ``module.`` / ``honet.`` prefixes."""
    while isinstance(checkpoint, dict) and not any(torch.is_tensor(v) for v in checkpoint.values()):
        inner = [k for k in ("state_dict", "model") if isinstance(checkpoint.get(k), dict)]
        if not inner:
            raise ReleasedCheckpointError(
                f"no tensors and no 'state_dict' / 'model' entry (keys: {sorted(checkpoint)[:10]})"
            )
        checkpoint = checkpoint[inner[0]]
    if not isinstance(checkpoint, dict):
        raise ReleasedCheckpointError(f"expected a dict of tensors, got {type(checkpoint)}")
    flat = {}
    for key, value in checkpoint.items():
        name = key
        while name.startswith(("module.", "honet.")):
            name = name.split(".", 1)[1]
        if name in flat:
            raise ReleasedCheckpointError(f"two keys become {name!r} without prefixes")
        flat[name] = value
    return flat


def _hourglass_path(level, branch, depth):
    """Released ``hg[level][branch]`` of a depth-``depth`` hourglass -> our module path."""
    return "inner." * (depth - 1 - level) + _HOURGLASS_BRANCH[branch]


def _rules(depth):
    """(pattern, replacement) pairs, tried in order; replacements may be functions of the match."""
    bottom_up = [
        (r"base_net\.layer0\.0\.weight", _BOTTOM_UP + "stem.conv1.weight"),
        (rf"base_net\.layer0\.1\.{_PARAM}", _BOTTOM_UP + r"stem.conv1.norm.\1"),
        (
            r"base_net\.layer([1-4])\.0\.(\d+)\.conv([1-3])\.weight",
            lambda m: f"{_BOTTOM_UP}res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.weight",
        ),
        (
            rf"base_net\.layer([1-4])\.0\.(\d+)\.bn([1-3])\.{_PARAM}",
            lambda m: f"{_BOTTOM_UP}res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm.{m[4]}",
        ),
        (
            r"base_net\.layer([1-4])\.0\.(\d+)\.downsample\.0\.weight",
            lambda m: f"{_BOTTOM_UP}res{int(m[1]) + 1}.{m[2]}.shortcut.weight",
        ),
        (
            rf"base_net\.layer([1-4])\.0\.(\d+)\.downsample\.1\.{_PARAM}",
            lambda m: f"{_BOTTOM_UP}res{int(m[1]) + 1}.{m[2]}.shortcut.norm.{m[3]}",
        ),
    ]
    # toplayer: res5's lateral (P5); latlayer1..3: res4..res2; smooth1..3: P4..P2.
    fpn = [
        (r"base_net\.toplayer\.(weight|bias)", _BACKBONE + r"fpn_lateral5.\1"),
        (
            r"base_net\.latlayer([1-3])\.(weight|bias)",
            lambda m: f"{_BACKBONE}fpn_lateral{5 - int(m[1])}.{m[2]}",
        ),
        (
            r"base_net\.smooth([1-3])\.(weight|bias)",
            lambda m: f"{_BACKBONE}fpn_output{5 - int(m[1])}.{m[2]}",
        ),
    ]
    hand = [
        (r"hand_head\.betas", _HEATMAP + "inverse_temperature"),
        (
            rf"hand_head\.hg\.(\d+)\.hg\.(\d+)\.([0-3])\.0\.(bn[1-3]|conv[1-3])\.{_PARAM}",
            lambda m: (
                f"{_HEATMAP}stacks.{m[1]}.hourglass."
                f"{_hourglass_path(int(m[2]), int(m[3]), depth)}.body.{_PREACT[m[4]]}.{m[5]}"
            ),
        ),
        (
            rf"hand_head\.res\.(\d+)\.0\.(bn[1-3]|conv[1-3])\.{_PARAM}",
            lambda m: f"{_HEATMAP}stacks.{m[1]}.residual.body.{_PREACT[m[2]]}.{m[3]}",
        ),
        (
            rf"hand_head\.fc\.(\d+)\.block\.([01])\.{_PARAM}",
            lambda m: f"{_HEATMAP}stacks.{m[1]}.fc.{m[2]}.{m[3]}",
        ),
        (r"hand_head\.score\.(\d+)\.(weight|bias)", _HEATMAP + r"stacks.\1.score.\2"),
        (r"hand_head\.fc_\.(\d+)\.(weight|bias)", _HEATMAP + r"remap_features.\1.\2"),
        (r"hand_head\.score_\.(\d+)\.(weight|bias)", _HEATMAP + r"remap_heatmaps.\1.\2"),
        (r"hand_encoder\.heatmap_conv\.(weight|bias)", _MESH + r"heatmap_conv.\1"),
        (r"hand_encoder\.encoding_conv\.(weight|bias)", _MESH + r"feature_conv.\1"),
        # reg[2 * block + module] -> encoder[3 * block + module] (a max-pool after every 2).
        (
            rf"hand_encoder\.reg\.(\d+)\.(bn|bn1|bn2|conv1|conv2|conv3)\.{_PARAM}",
            lambda m: (
                f"{_MESH}encoder.{3 * (int(m[1]) // 2) + int(m[1]) % 2}.body."
                f"{_ENCODER_RESIDUAL[m[2]]}.{m[3]}"
            ),
        ),
        (r"mano_branch\.mano_base_layer\.(\d+)\.(weight|bias)", _MESH + r"fc.\1.\2"),
        (r"mano_branch\.pose_reg\.(weight|bias)", _MESH + r"pose.\1"),
        (r"mano_branch\.shape_reg\.(weight|bias)", _MESH + r"shape.\1"),
    ]
    obj = [
        (
            r"obj_head\.conv([1-9])_([12])\.(weight|bias)",
            lambda m: f"{_OBJECT}blocks.{int(m[1]) - 1}.{0 if m[2] == '1' else 3}.{m[3]}",
        ),
        (
            rf"obj_head\.bn([1-9])_([12])\.{_PARAM}",
            lambda m: f"{_OBJECT}blocks.{int(m[1]) - 1}.{1 if m[2] == '1' else 4}.{m[3]}",
        ),
        (r"obj_head\.out_conv\.(weight|bias)", _OBJECT + r"predictor.\1"),
    ]
    cr = [
        (
            r"transformer\.layers\.(\d+)\.(encode_query|encode_key|encode_value)\.(weight|bias)",
            _CR + r"\1.\2.\3",
        ),
        (r"transformer\.layers\.(\d+)\.norm2\.(weight|bias)", _CR + r"\1.norm.\2"),
        # mlp.fc1 / fc2 -> mlp.0 / mlp.2 (a GELU between them).
        (
            r"transformer\.layers\.(\d+)\.mlp\.fc([12])\.(weight|bias)",
            lambda m: f"{_CR}{m[1]}.mlp.{2 * int(m[2]) - 2}.{m[3]}",
        ),
    ]
    return [(re.compile(p), r) for p, r in bottom_up + fpn + hand + obj + cr]


def _target_name(rules, key):
    for pattern, replacement in rules:
        match = pattern.fullmatch(key)
        if match:
            return replacement(match) if callable(replacement) else match.expand(replacement)
    return None


def _object_channel_order(channels):
    """Indices reordering the released object output's (conf, x, y) x 21 channels to ours."""
    points = len(RELEASED_CONTROL_POINT_ORDER)
    if channels != 3 * points:
        raise ReleasedCheckpointError(
            f"obj_head.out_conv has {channels} channels, expected 3 x {points} control points"
        )
    return [block * points + i for block in range(3) for i in RELEASED_CONTROL_POINT_ORDER]


def _reordered(key, value, joints2d_order):
    """A released tensor with its control-point channels (object output) and, for
    ``joints2d_order`` "ho3d", its heatmap channels in this package's orders."""
    if key in _OBJECT_OUTPUT:
        return value[_object_channel_order(value.shape[0])]
    if joints2d_order == "manopth":
        return value
    if joints2d_order != "ho3d":
        raise ValueError(f"joints2d_order must be 'manopth' or 'ho3d', got {joints2d_order!r}")
    order = torch.as_tensor(HO3D_TO_MANOPTH)
    if key == "hand_head.betas" or re.fullmatch(r"hand_head\.score\.\d+\.(weight|bias)", key):
        return value[order]  # heatmap channels out
    if key == "hand_encoder.heatmap_conv.weight" or re.fullmatch(
        r"hand_head\.score_\.\d+\.weight", key
    ):
        return value[:, order]  # heatmap channels in
    return value


def _grid(resolution, dtype):
    """The released hand head's ``uu`` / ``vv``: cell centres normalised to [0, 1]."""
    centres = (torch.arange(resolution, dtype=dtype) + 0.5) / resolution
    return centres.expand(resolution, resolution)


def _check_constant(key, value):
    """Released buffers that are fixed by construction: return the reason they are dropped, or
    raise when one is not the constant the model uses."""
    if key in ("hand_head.uu", "hand_head.vv"):
        grid = _grid(value.shape[-1], value.dtype)
        expected = grid if key.endswith("uu") else grid.T
        if value.shape != expected.shape or not torch.allclose(value, expected):
            raise ReleasedCheckpointError(f"{key} is not the cell-centre grid the model uses")
        return "soft-argmax cell centres (the model's own grid)"
    if key == "mano_branch.coord_change_mat":
        if not torch.equal(value.float(), torch.diag(torch.tensor([1.0, -1.0, -1.0]))):
            raise ReleasedCheckpointError(f"{key} is not diag(1, -1, -1): {value.tolist()}")
        return "OpenCV -> OpenGL change of the evaluation output (model outputs OpenCV)"
    if key.startswith("mano_branch.mano_layer."):
        return "MANO buffers (MANO comes from MODEL.MANO.MODEL_PATH)"
    return None


def convert_released_state_dict(released, model_state, joints2d_order="manopth"):
    """Map a flat released state dict onto the keys of ``model_state`` (a model's state dict).

    ``joints2d_order``: the joint order of the released heatmaps, "manopth" (that of their MANO
    layer's joints, kept) or "ho3d" (HO3D's annotation order, reordered to manopth's).

    Returns ``(converted, report)``: ``converted`` maps model keys to tensors (dtype of the
    model), ``report`` has ``mapped`` (count), ``dropped`` (released key -> reason) and
    ``not_in_checkpoint`` (model keys left to their built values: detector, MANO layer).
    Raises ReleasedCheckpointError listing unmapped released keys, shape mismatches and model
    keys the file should have provided but did not.
    """
    depth = 1 + max(
        (int(m[1]) for k in released if (m := re.match(r"hand_head\.hg\.\d+\.hg\.(\d+)\.", k))),
        default=0,
    )
    rules = _rules(depth)
    converted, dropped, unmapped, mismatched = {}, {}, [], []
    for key, value in released.items():
        reason = _check_constant(key, value)
        if reason is not None:
            dropped[key] = reason
            continue
        name = _target_name(rules, key)
        if name is None or name not in model_state:
            if name is not None and name.endswith("num_batches_tracked"):
                dropped[key] = "BatchNorm step counter of a frozen norm (unused at inference)"
                continue
            unmapped.append(f"{key} -> {name}" if name else key)
            continue
        target = model_state[name]
        value = _reordered(key, value.reshape(-1) if key == "hand_head.betas" else value,
                           joints2d_order)  # fmt: skip
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append(f"{key} {tuple(value.shape)} -> {name} {tuple(target.shape)}")
            continue
        if name in converted:
            unmapped.append(f"{key} -> {name} (already mapped)")
            continue
        converted[name] = value.detach().to(dtype=target.dtype).clone()
    not_in_checkpoint = [k for k in model_state if k not in converted]
    missing = [
        k for k in not_in_checkpoint if not k.startswith(DETECTOR_PREFIXES + (HAND_LAYER_PREFIX,))
    ]
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} released keys have no place in the model:")
        problems += [f"  {k}" for k in unmapped]
    if mismatched:
        problems.append(f"{len(mismatched)} released tensors have the wrong shape:")
        problems += [f"  {k}" for k in mismatched]
    if missing:
        problems.append(f"{len(missing)} model keys are missing from the released file:")
        problems += [f"  {k}" for k in missing]
    if problems:
        raise ReleasedCheckpointError("\n".join(problems))
    report = {"mapped": len(converted), "dropped": dropped, "not_in_checkpoint": not_in_checkpoint}
    return converted, report


# torchvision's ResNet-50 (``torchvision.models.resnet50``, files resnet50-19c8e357.pth and
# resnet50-0676ba61.pth) -> the released file's names: their ``base_net`` wraps torchvision's
# stem as ``layer0`` (conv1, bn1) and each stage as ``layer<i>.0``.
_TORCHVISION_STEM = {"conv1": "base_net.layer0.0", "bn1": "base_net.layer0.1"}


def torchvision_resnet50_as_released(state_dict):
    """A torchvision ResNet-50 state dict renamed to the released ``base_net`` keys, and the
    keys dropped with the reason (the ImageNet classifier ``fc``)."""
    renamed, dropped = {}, {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            dropped[key] = "ImageNet classifier (not part of the backbone)"
        elif head in _TORCHVISION_STEM:
            renamed[f"{_TORCHVISION_STEM[head]}.{rest}"] = value
        elif re.fullmatch(r"layer[1-4]", head):
            renamed[f"base_net.{head}.0.{rest}"] = value
        else:
            raise ReleasedCheckpointError(f"{key} is not a torchvision ResNet-50 key")
    return renamed, dropped


def convert_torchvision_resnet50(state_dict, model_state):
    """Map a torchvision ResNet-50 state dict onto the released backbone's bottom-up keys of
    ``model_state`` (``backbone.bottom_up.*``). Returns ``(converted, report)`` as
    :func:`convert_released_state_dict`; raises ReleasedCheckpointError listing torchvision
    keys without a place, shape mismatches and bottom-up weights the file lacks (BatchNorm step
    counters, absent from the older file, may be missing)."""
    renamed, dropped = torchvision_resnet50_as_released(state_dict)
    rules = _rules(depth=1)
    converted, unmapped, mismatched = {}, [], []
    for key, value in renamed.items():
        name = _target_name(rules, key)
        if name is None or name not in model_state:
            unmapped.append(f"{key} -> {name}" if name else key)
            continue
        if tuple(value.shape) != tuple(model_state[name].shape):
            shape = tuple(model_state[name].shape)
            mismatched.append(f"{key} {tuple(value.shape)} -> {name} {shape}")
            continue
        converted[name] = value.detach().to(dtype=model_state[name].dtype).clone()
    missing = [
        k
        for k in model_state
        if k.startswith(_BOTTOM_UP) and k not in converted and not k.endswith("num_batches_tracked")
    ]
    problems = []
    for title, keys in (
        ("torchvision keys have no place in the released backbone", unmapped),
        ("torchvision tensors have the wrong shape", mismatched),
        ("backbone keys are missing from the torchvision file", missing),
    ):
        if keys:
            problems += [f"{len(keys)} {title}:"] + [f"  {k}" for k in keys]
    if problems:
        raise ReleasedCheckpointError("\n".join(problems))
    not_in_checkpoint = [k for k in model_state if k not in converted]
    return converted, {"mapped": len(converted), "dropped": dropped,
                       "not_in_checkpoint": not_in_checkpoint}  # fmt: skip


# Layers whose initialisation here differs from the released code's: our MANO regressor starts
# near the flat hand and mean shape (small weights, identity-rotation bias), theirs with
# torch.nn.Linear's default. Every other pose-head and FPN layer already starts as theirs
# (torch defaults; zero object-head biases; the transformer MLP's Xavier weights).
RELEASED_DEFAULT_INIT_LAYERS = (
    "roi_heads.hand_head.mesh_head.pose",
    "roi_heads.hand_head.mesh_head.shape",
)


def released_initialisation(model):
    """Re-initialise (in place) the layers of ``model`` whose start differs from the released
    code's (``RELEASED_DEFAULT_INIT_LAYERS``) as the released code does; returns their names."""
    modules = dict(model.named_modules())
    for name in RELEASED_DEFAULT_INIT_LAYERS:
        if name not in modules:
            raise ReleasedCheckpointError(f"the model has no layer {name}")
        modules[name].reset_parameters()
    return list(RELEASED_DEFAULT_INIT_LAYERS)
