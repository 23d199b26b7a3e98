"""Object pose from the object head's voting field: per control point the most confident cells
vote for its 2D position; PnP-RANSAC (OpenCV EPnP) against the object's 3D control points gives
R, t in the OpenCV camera frame (``x_cam = R @ x_obj + t``, metres).

Voting is vectorised over cells, control points and objects; only the PnP solve runs once per
object.
"""

import cv2
import numpy as np
import torch

from ..geometry import box_units_to_pixels


def vote_control_points(coords, confidence, object_boxes, topk, conf_thresh):
    """Per control point the ``topk`` most confident cells.

    Args:
        coords: (N, P, R, R, 2) predicted positions normalised to the object box.
        confidence: (N, P, R, R) in [0, 1].
        object_boxes: (N, 4) [x1, y1, x2, y2] pixels.
        topk: votes per control point; conf_thresh: a vote is valid above this confidence.

    Returns:
        votes (N, P, K, 2) pixels, vote_confidence (N, P, K) (descending), valid (N, P, K) bool.
    """
    vote_confidence, index = confidence.flatten(2).topk(topk, dim=-1)
    picked = coords.flatten(2, 3).gather(2, index[..., None].expand(-1, -1, -1, 2))
    return (
        box_units_to_pixels(picked, object_boxes),
        vote_confidence,
        vote_confidence > conf_thresh,
    )


def control_point_estimates(votes, vote_confidence, valid):
    """One 2D position and confidence per control point from its votes.

    Position: the confidence-weighted mean of the valid votes (the most confident vote where
    none is valid); confidence: the mean confidence of the votes. Shapes as returned by
    :func:`vote_control_points` -> points (N, P, 2) pixels, confidence (N, P).
    """
    weights = vote_confidence * valid
    total = weights.sum(-1, keepdim=True)
    mean = (votes * weights[..., None]).sum(-2) / total.clamp_min(1e-12)
    points = torch.where(total > 0, mean, votes[..., 0, :])
    return points, vote_confidence.mean(-1)


def solve_pnp(votes, valid, points3d, K, min_points, reprojection_error, iterations):
    """PnP-RANSAC (EPnP) per object on its valid votes.

    Args:
        votes: (N, P, V, 2) pixels; valid: (N, P, V) bool; points3d: (N, P, 3) control points
            in the object frame, metres; K: (N, 3, 3) intrinsics of the votes' pixels.
            numpy arrays or torch tensors.
        min_points: fewer valid votes than this -> a failed pose.
        reprojection_error: RANSAC inlier threshold, pixels; iterations: RANSAC iterations.

    Returns numpy R (N, 3, 3), t (N, 3) metres (OpenCV camera frame) and ok (N,) bool; failed
    poses (too few votes, no RANSAC consensus, object behind the camera) have R = I, t = 0.
    """
    if min_points < 4:
        raise ValueError(f"MODEL.HANDOBJ.OBJECT.MIN_PNP_POINTS={min_points}: PnP needs >= 4")
    votes, valid, points3d, K = (
        x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
        for x in (votes, valid, points3d, K)
    )
    n = votes.shape[0]
    rotations = np.tile(np.eye(3), (n, 1, 1))
    translations = np.zeros((n, 3))
    ok = np.zeros(n, dtype=bool)
    object_points = np.broadcast_to(points3d[:, :, None].astype(np.float64), valid.shape + (3,))
    for i in np.flatnonzero(valid.reshape(n, -1).sum(1) >= min_points):
        try:
            found, rvec, tvec, _ = cv2.solvePnPRansac(
                np.ascontiguousarray(object_points[i][valid[i]]),
                np.ascontiguousarray(votes[i][valid[i]], dtype=np.float64),
                np.asarray(K[i], dtype=np.float64),
                None,
                iterationsCount=int(iterations),
                reprojectionError=float(reprojection_error),
                flags=cv2.SOLVEPNP_EPNP,
            )
        except cv2.error:  # degenerate votes (e.g. all at one pixel)
            continue
        if found and tvec[2, 0] > 0:
            rotations[i] = cv2.Rodrigues(rvec)[0]
            translations[i] = tvec[:, 0]
            ok[i] = True
    return rotations, translations, ok


def object_poses(instances, camera_K, control_points3d, min_points, reprojection_error,
                 iterations):  # fmt: skip
    """Post-processing: the object pose of every pair of one image, set on ``instances`` (the
    pose branch's rows, with ``pred_control_point_votes`` (K, P, V, 2) px,
    ``pred_control_point_votes_valid`` (K, P, V) and ``pred_has_object`` (K,)) as
    ``pred_object_R`` (K, 3, 3), ``pred_object_t`` (K, 3) m and ``pred_object_pose_valid`` (K,).

    ``camera_K`` (3, 3) are the intrinsics of the votes' pixels and ``control_points3d``
    (P, 3) m the object's control points; without either no pose is solved. Unsolved poses
    have R = I, t = 0; rows without an object have NaN R, t. Settings: :func:`solve_pnp`.
    """
    votes = instances.pred_control_point_votes
    k, device, dtype = len(instances), votes.device, votes.dtype
    rotations = torch.eye(3, dtype=dtype, device=device).repeat(k, 1, 1)
    translations = votes.new_zeros(k, 3)
    ok = torch.zeros(k, dtype=torch.bool, device=device)
    if k and camera_K is not None and control_points3d is not None:
        R, t, solved = solve_pnp(
            votes,
            instances.pred_control_point_votes_valid,
            np.broadcast_to(np.asarray(control_points3d, dtype=np.float64), (k, votes.shape[1], 3)),
            np.broadcast_to(np.asarray(camera_K, dtype=np.float64), (k, 3, 3)),
            min_points,
            reprojection_error,
            iterations,
        )
        rotations = torch.as_tensor(R, dtype=dtype, device=device)
        translations = torch.as_tensor(t, dtype=dtype, device=device)
        ok = torch.as_tensor(solved, device=device)
    absent = ~instances.pred_has_object
    rotations[absent] = float("nan")
    translations[absent] = float("nan")
    instances.pred_object_R = rotations
    instances.pred_object_t = translations
    instances.pred_object_pose_valid = ok & ~absent
    return instances
