"""HandObjectDatasetMapper and its transforms: hand-computed crops, augmentation consistency
(3D from the transformed MANO parameters / object pose projects onto the transformed 2D), the
pseudo-label / evaluation / box-only record kinds, and the OpenCV image operations."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import BoxMode

from handobj_d2.data import transforms as T
from handobj_d2.data.augmentation import DefaultAugmentation
from handobj_d2.data.dataset_mapper import HandObjectDatasetMapper
from handobj_d2.data.segmentation import encode_ho3d
from handobj_d2.geometry import box_control_points, points_to_box, project_points
from handobj_d2.mano import HandLayer

RANDOM_MANO = str(Path(__file__).parent / "fixtures" / "mano" / "mano_format_random_chumpy.pkl")
HEIGHT, WIDTH = 120, 160
# fx != fy: the roll's pixel map is then not a plain rotation, which the property test covers.
K = np.array([[180.0, 0.0, 83.0], [0.0, 200.0, 57.5], [0.0, 0.0, 1.0]])
CORNERS = np.array(np.meshgrid([-0.03, 0.03], [-0.02, 0.02], [-0.04, 0.04])).reshape(3, -1).T


def mapper(is_train, **overrides):
    args = dict(
        crop_size=96,
        crop_scale=1.5,
        rotation=np.pi,
        scale_jitter=0.2,
        center_jitter=0.1,
        color_jitter=[0.5, 0.5, 0.5, 0.15],
        blur_max_sigma=0.5,
        image_format="BGR",
    )
    args.update(overrides)
    return HandObjectDatasetMapper(is_train, **args)


@pytest.fixture(scope="module")
def hand_layer():
    return HandLayer(RANDOM_MANO)


def rodrigues(axis_angle):
    return cv2.Rodrigues(np.asarray(axis_angle, np.float64).reshape(3, 1))[0]


def hand_joints(hand_layer, mano_pose, mano_shape):
    """Wrist-relative joints (21, 3) m from MANO parameters (float64)."""
    with torch.no_grad():
        _, joints = hand_layer(
            torch.tensor(np.asarray(mano_pose), dtype=torch.float64).float()[None],
            torch.tensor(np.asarray(mano_shape), dtype=torch.float64).float()[None],
        )
    return joints[0].double().numpy()


def labeled_record(hand_layer, rng):
    """A full HO3D-like training record: MANO hand, posed box object, mask, intrinsics."""
    mano_pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)])
    mano_shape = rng.normal(0, 0.5, 10)
    wrist = np.array([rng.uniform(-0.03, 0.0), rng.uniform(-0.02, 0.02), 0.5])
    joints3d = hand_joints(hand_layer, mano_pose, mano_shape) + wrist
    joints2d = project_points(joints3d, K)
    R = rodrigues(rng.normal(size=3))
    t = wrist + np.array([0.06, rng.uniform(-0.02, 0.02), 0.03])
    points3d = box_control_points(CORNERS)
    points2d = project_points(points3d @ R.T + t, K)
    return {
        "file_name": "unused.png",
        "image_id": "seq/0000",
        "height": HEIGHT,
        "width": WIDTH,
        "camera_K": K,
        "annotations": [
            {
                "category_id": 0,
                "bbox": points_to_box(joints2d),
                "bbox_mode": BoxMode.XYXY_ABS,
                "joints2d": joints2d,
                "joints3d": joints3d,
                "mano_pose": mano_pose,
                "mano_shape": mano_shape,
            },
            {
                "category_id": 1,
                "bbox": points_to_box(points2d[:8]),
                "bbox_mode": BoxMode.XYXY_ABS,
                "object_name": "box",
                "object_R": R,
                "object_t": t,
                "control_points3d": points3d,
                "control_points2d": points2d,
                "object_diameter": float(np.linalg.norm(CORNERS[0] - CORNERS[-1])),
            },
        ],
    }


def test_augmentation_keeps_3d_and_2d_consistent(hand_layer):
    """Random augmentation, many seeds: joints from the transformed MANO parameters (+ the
    transformed root) and control points under the transformed pose project with the
    transformed intrinsics onto the transformed 2D points within 0.5 px."""
    rng = np.random.default_rng(0)
    train = mapper(True)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    angles = []
    for seed in range(40):
        record = labeled_record(hand_layer, rng)
        np.random.seed(seed)
        out = train.map(record, image)
        gt = out["hand_object"]
        K_in = out["camera_K"].double().numpy()
        assert gt.gt_has_mano[0] and gt.gt_has_joints3d[0] and gt.gt_has_object_pose[0]
        # The rolled root: M = crop @ K Rz K^-1  =>  Rz = K^-1 crop^-1 M K.
        M = out["image_to_input"].double().numpy()
        crop = K_in @ np.linalg.inv(K)
        roll = np.linalg.inv(K) @ np.linalg.inv(crop) @ M @ K
        root = roll @ record["annotations"][0]["joints3d"][0]
        mano = hand_joints(hand_layer, gt.gt_mano_pose[0], gt.gt_mano_shape[0])
        assert np.allclose(gt.gt_joints3d[0].double().numpy(), mano - mano[:1], atol=1e-4)
        joints = mano - mano[:1] + root
        error = np.linalg.norm(project_points(joints, K_in) - gt.gt_joints2d[0].numpy(), axis=1)
        assert error.max() < 0.5, (seed, error.max())
        R, t = gt.gt_object_R[0].double().numpy(), gt.gt_object_t[0].double().numpy()
        points = gt.gt_control_points3d[0].double().numpy() @ R.T + t
        error = np.linalg.norm(
            project_points(points, K_in) - gt.gt_control_points2d[0].numpy(), axis=1
        )
        assert error.max() < 0.5, (seed, error.max())
        # The input intrinsics stay a pinhole matrix (crop = scale + translation of K).
        assert K_in[0, 1] == 0 and K_in[1, 0] == 0 and np.allclose(K_in[2], [0, 0, 1])
        assert np.isclose(K_in[0, 0] / K_in[1, 1], K[0, 0] / K[1, 1])
        # The same affine moved the 2D labels and the image.
        moved = T.apply_affine(record["annotations"][0]["joints2d"], M)
        assert np.abs(moved - gt.gt_joints2d[0].numpy()).max() < 1e-3
        angles.append(np.arctan2(M[1, 0], M[0, 0]))
    # Rotations really happen, over the whole range.
    assert np.ptp(angles) > 4.0


def test_augmented_image_and_mask_follow_the_labels():
    """A bright square around one image point and the object mask land where the affine
    puts them, whatever the rotation and crop."""
    train = mapper(True, color_jitter=[0, 0, 0, 0], blur_max_sigma=0.0)
    centre = np.array([70.0, 60.0])
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[55:66, 65:76] = 255
    mask = np.zeros((HEIGHT // 2, WIDTH // 2), bool)  # half resolution, like HO3D v2's seg
    mask[20:40, 40:60] = True  # image pixels 80..119 x 40..79
    record = {
        "image_id": "square",
        "camera_K": K,
        "annotations": [
            {"category_id": 0, "bbox": [50, 40, 90, 80], "bbox_mode": BoxMode.XYXY_ABS},
            {"category_id": 1, "bbox": [80, 40, 120, 80], "bbox_mode": BoxMode.XYXY_ABS},
        ],
    }
    for seed in range(10):
        np.random.seed(seed)
        out = train.map(record, image, mask)
        M = out["image_to_input"].double().numpy()
        x, y = np.round(T.apply_affine(centre[None], M)[0]).astype(int)
        assert out["image"].shape == (3, 96, 96)
        assert (out["image"][:, y - 1 : y + 2, x - 1 : x + 2] == 255).all()
        x, y = np.round(T.apply_affine(np.array([[99.5, 59.5]]), M)[0]).astype(int)
        obj_mask = out["hand_object"].gt_object_masks.tensor[0].numpy()
        assert obj_mask.dtype == bool and obj_mask[y - 2 : y + 3, x - 2 : x + 3].all()
        x, y = np.round(T.apply_affine(np.array([[60.0, 60.0]]), M)[0]).astype(int)
        assert obj_mask[y - 2 : y + 3, x - 2 : x + 3].sum() == 0


def test_test_time_crop_by_hand():
    """No randomness at test time: the fused box [40, 30, 100, 70] enlarged 1.5x is the square
    [25, 5, 115, 95]; a 180 px input scales by 2."""
    test = mapper(False, crop_size=180, image_format="RGB")
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[50, 60] = (10, 20, 30)  # BGR
    record = {
        "image_id": "a",
        "camera_K": K,
        "annotations": [
            {"category_id": 0, "bbox": [40, 30, 80, 70], "bbox_mode": BoxMode.XYXY_ABS},
            {"category_id": 1, "bbox": [70, 40, 30, 20], "bbox_mode": BoxMode.XYWH_ABS},
        ],
    }
    outs = [test.map(record, image) for _ in range(2)]
    for out in outs:
        expected = np.array([[2.0, 0, -50], [0, 2.0, -10], [0, 0, 1]])
        assert np.allclose(out["image_to_input"].numpy(), expected)
        assert np.allclose(out["camera_K"].numpy(), expected @ K, atol=1e-4)
        gt = out["hand_object"]
        assert np.allclose(gt.gt_hand_boxes.tensor[0].numpy(), [30, 50, 110, 130])
        assert np.allclose(gt.gt_object_boxes.tensor[0].numpy(), [90, 70, 150, 110])
        assert out["instances"].gt_classes.tolist() == [0, 1]
        assert np.allclose(
            out["instances"].gt_boxes.tensor.numpy(), [[30, 50, 110, 130], [90, 70, 150, 110]]
        )
        # Pixel (60, 50) -> (70, 90), RGB order.
        assert out["image"][:, 90, 70].tolist() == [30, 20, 10]
        # No segmentation: the object box stands in for the mask.
        assert gt.gt_object_masks.tensor[0, 70:110, 90:150].all()
        assert gt.gt_object_masks.tensor.sum() == 40 * 60 and not gt.gt_has_object_pose[0]
        assert not gt.gt_has_joints2d[0] and not gt.gt_has_mano[0]
    assert torch.equal(outs[0]["image"], outs[1]["image"])


def test_pseudo_label_record(hand_layer):
    """Pseudo-labels: root-relative joints rotate with the roll and stay root-relative; no
    MANO, no object pose; the flag passes through and sets the loss weight
    (SEMI.PSEUDO_LOSS_WEIGHT)."""
    rng = np.random.default_rng(2)
    record = labeled_record(hand_layer, rng)
    hand, obj = record["annotations"]
    hand["joints3d"] = hand["joints3d"] - hand["joints3d"][:1]
    del hand["mano_pose"], hand["mano_shape"]
    for key in ("object_R", "object_t", "control_points3d", "control_points2d", "object_name"):
        del obj[key]
    record["is_pseudo_label"] = True
    np.random.seed(3)
    out = mapper(True, pseudo_loss_weight=0.25).map(record, np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    assert out["is_pseudo_label"] is True
    gt = out["hand_object"]
    assert gt.gt_has_joints3d[0] and not gt.gt_has_mano[0]
    assert not gt.gt_has_object_pose[0]
    assert gt.gt_loss_weight.tolist() == [0.25]
    del record["is_pseudo_label"]
    plain = mapper(True, pseudo_loss_weight=0.25).map(
        record, np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    )
    assert plain["hand_object"].gt_loss_weight.tolist() == [1.0]
    M = out["image_to_input"].double().numpy()
    # Recover the roll from the affine: M = crop @ K Rz K^-1  =>  Rz = K^-1 crop^-1 M K.
    crop = out["camera_K"].double().numpy() @ np.linalg.inv(K)
    roll = np.linalg.inv(K) @ np.linalg.inv(crop) @ M @ K
    joints = gt.gt_joints3d[0].double().numpy()
    assert np.allclose(joints[0], 0, atol=1e-6)
    assert np.allclose(joints, hand["joints3d"] @ roll.T, atol=1e-5)


def test_evaluation_and_box_only_records():
    """HO3D evaluation records (root3d only) give has_joints3d False; test-time records with
    only given boxes get their boxes mapped into the input."""
    test = mapper(False)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    record = {
        "image_id": "eval",
        "camera_K": K,
        "annotations": [
            {"category_id": 0, "bbox": [40, 30, 80, 70], "bbox_mode": 0, "root3d": [0, 0, 0.5]},
        ],
    }
    out = test.map(record, image)
    gt = out["hand_object"]
    assert not gt.gt_has_joints3d[0] and not gt.gt_has_object[0]
    assert gt.gt_joints3d.abs().sum() == 0
    boxes_only = {"image_id": "demo", "hand_box": [40, 30, 80, 70], "object_box": [70, 40, 100, 60]}
    out = mapper(False, crop_size=180).map(boxes_only, image)
    assert np.allclose(out["hand_box"].numpy(), [30, 50, 110, 130])
    assert np.allclose(out["object_box"].numpy(), [90, 70, 150, 110])
    assert not out["hand_object"].gt_has_hand[0] and not out["hand_object"].gt_has_object[0]
    assert "camera_K" not in out
    nothing = mapper(False, crop_size=80).map({"image_id": "raw"}, image)
    # Whole 160x120 image, padded to a 160 px square: scale 0.5, offset 20 px vertically.
    assert np.allclose(nothing["image_to_input"].numpy(), [[0.5, 0, 0], [0, 0.5, 10], [0, 0, 1]])


def test_errors_name_the_record():
    test = mapper(False)
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    bad = {"image_id": "seq/7", "annotations": [{"category_id": 0, "bbox": [1, 2, 3]}]}
    with pytest.raises(ValueError, match="seq/7"):
        test.map(bad, image)
    two = {"image_id": "seq/8", "annotations": [{"category_id": 1, "bbox": [0, 0, 9, 9]}] * 2}
    with pytest.raises(ValueError, match="seq/8"):
        test.map(two, image)


def test_mapper_reads_files_and_checks_them(tmp_path):
    image = np.full((HEIGHT, WIDTH, 3), 7, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    hand_mask = np.zeros((HEIGHT, WIDTH), bool)
    object_mask = np.zeros((HEIGHT, WIDTH), bool)
    object_mask[40:80, 80:120] = True
    cv2.imwrite(
        str(tmp_path / "seg.png"),
        np.ascontiguousarray(encode_ho3d(hand_mask, object_mask)[..., ::-1]),
    )
    record = {
        "file_name": str(tmp_path / "a.png"),
        "image_id": "a",
        "height": HEIGHT,
        "width": WIDTH,
        "segmentation_file": str(tmp_path / "seg.png"),
        "segmentation_format": "ho3d",
        "annotations": [{"category_id": 1, "bbox": [80, 40, 120, 80], "bbox_mode": 0}],
    }
    out = mapper(False, crop_size=60).map(
        record, image, HandObjectDatasetMapper.load_object_mask(record)
    )
    called = mapper(False, crop_size=60)(record)
    masks = [x["hand_object"].gt_object_masks.tensor for x in (out, called)]
    assert torch.equal(*masks)
    # Box 40 px wide -> 60 px crop side -> scale 1: the object fills the middle 40x40.
    assert masks[1].sum() == 40 * 40
    assert (called["image"] == 7).all()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        mapper(False)({**record, "file_name": str(tmp_path / "broken.png")})
    with pytest.raises(ValueError, match="a.png"):
        mapper(False)({**record, "height": HEIGHT + 1})


# ----------------------------------------------------------------------------------------------
# transforms


def test_roll_homography_by_hand():
    """fx = fy: a plain rotation about the principal point; +90 degrees takes the point 10 px
    right of it to 10 px below it (x right, y down)."""
    K_iso = np.array([[300.0, 0, 50], [0, 300.0, 40], [0, 0, 1]])
    H = T.roll_homography(K_iso, np.pi / 2)
    assert np.allclose(
        T.apply_affine(np.array([[60.0, 40.0], [50.0, 40.0]]), H), [[50, 50], [50, 40]]
    )
    assert np.allclose(H[2], [0, 0, 1])


def test_transform_box():
    shift = np.array([[2.0, 0, 5], [0, 2.0, -1], [0, 0, 1]])
    assert np.allclose(T.transform_box([1, 2, 3, 4], shift), [7, 3, 11, 7])
    quarter = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # (x, y) -> (-y, x)
    # Joints [0, 0]..[4, 2] with a 1 px margin: rotated joints span x -2..0, y 0..4.
    joints = np.array([[0.0, 0], [4, 2], [2, 1]])
    assert np.allclose(
        T.transform_box([-1, -1, 5, 3], quarter, inner_points=joints), [-3, -1, 1, 5]
    )
    # An object box cut by its control points' bounds after a 45 degree rotation.
    c = np.sqrt(0.5)
    diag = np.array([[c, -c, 0], [c, c, 0], [0, 0, 1]])
    square = np.array([[0.0, 0], [2, 0], [0, 2], [2, 2]])
    loose = T.transform_box([0, 0, 2, 2], diag)
    assert np.allclose(loose, [-np.sqrt(2), 0, np.sqrt(2), 2 * np.sqrt(2)])
    cut = T.transform_box([0, 0, 2, 2], diag, outer_points=square[:3])
    assert np.allclose(cut, [-np.sqrt(2), 0, np.sqrt(2), np.sqrt(2)])


def test_default_augmentation_crop_ranges():
    augmentation = DefaultAugmentation(0.0, 0.2, 0.1, [0, 0, 0, 0], 0.0)
    rng = np.random.default_rng(0)
    boxes = np.array(
        [augmentation.crop_box([20, 10], 60.0, augmentation.sample(rng)) for _ in range(500)]
    )
    sides = boxes[:, 2] - boxes[:, 0]
    assert np.allclose(sides, boxes[:, 3] - boxes[:, 1])
    assert sides.min() >= 48 and sides.max() <= 72 and np.ptp(sides) > 20
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 - [20, 10]
    assert (np.abs(centres) <= 0.1 * sides[:, None] + 1e-9).all()


def test_color_jitter_by_hand():
    image = np.array([[[0, 0, 255], [100, 50, 20]]], np.uint8)  # BGR: red, a brown
    assert np.array_equal(T.color_jitter(image), image)
    assert T.color_jitter(image, brightness=2.0)[0].tolist() == [[0, 0, 255], [200, 100, 40]]
    # Zero saturation: every pixel turns into its own grey level.
    grey = T.color_jitter(image, saturation=0.0)
    assert (grey[..., 0] == grey[..., 2]).all()
    assert grey[0, 0, 0] == cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[0, 0]
    # Zero contrast: the mean grey level everywhere.
    flat = T.color_jitter(image, contrast=0.0)
    assert (np.abs(flat - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).mean()) <= 1).all()
    # All three at once: one affine map, 0.5 * 1.5 * (0.5 x + 0.5 grey(x)) + (1 - 1.5) * 0.5 mean.
    mixed = T.color_jitter(image, brightness=0.5, contrast=1.5, saturation=0.5).astype(float)
    grey = image.astype(float) @ T.GREY_WEIGHTS_BGR
    mean = grey.mean()
    expected = 0.75 * (0.5 * image + 0.5 * grey[..., None]) - 0.25 * mean
    assert np.abs(mixed - np.clip(expected, 0, 255)).max() <= 0.5 + 1e-9
    # Half a turn of hue takes red to cyan (OpenCV's 8-bit hue: a few levels of rounding).
    cyan = T.color_jitter(image[:, :1], hue=0.5)[0, 0].astype(int)
    assert np.abs(cyan - [255, 255, 0]).max() <= 4


def test_gaussian_blur():
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 200
    assert T.gaussian_blur(image, 0.0) is image
    blurred = T.gaussian_blur(image, 0.5).astype(float)
    assert abs(blurred[..., 0].sum() - 200) < 3
    # 1D Gaussian weights at 0 and 1 for sigma 0.5: exp(0) and exp(-2), normalised.
    w = np.exp(-np.array([0.0, 1, 4]) / (2 * 0.25))
    w /= w[0] + 2 * w[1] + 2 * w[2]
    # (OpenCV blurs uint8 images in fixed point: within 2 levels.)
    assert abs(blurred[4, 4, 0] - 200 * w[0] ** 2) <= 2
    assert abs(blurred[4, 5, 0] - 200 * w[0] * w[1]) <= 2


def test_rotate_axis_angle():
    quarter_z = np.array([0.0, 0.0, np.pi / 2])
    out = T.rotate_axis_angle(quarter_z, T.roll_matrix(np.pi / 2))
    assert np.allclose(out, [0, 0, np.pi])
