"""Rendering one synthetic frame: the hand and the object over a background
(``handobj_d2.rendering``; OpenCV camera frame, metres, pixels)."""

import numpy as np

from ...rendering import Mesh, render_meshes

HAND, OBJECT = 0, 1  # mesh ids of the rendering


def render_frame(camera_K, background, hand, obj, lighting):
    """Render a hand-object frame.

    Args:
        camera_K: (3, 3) intrinsics, pixels.
        background: (H, W, 3) RGB float image in [0, 1]; sets the image size.
        hand: (vertices (778, 3) m camera frame, faces (F, 3), skin colour (3,) RGB in [0, 1]).
        obj: (vertices (V, 3) m camera frame, faces (G, 3), uvs (V, 2), texture (T, T, 3)
            uint8 RGB), or None for a hand alone (the object mask is then empty).
        lighting: a ``rendering.Lighting`` (scene.sample_lighting).

    Returns:
        image (H, W, 3) uint8 RGB, hand_mask and object_mask (H, W) bool: the visible pixels
        of each (the nearer surface wins, so hand and object occlude each other).
    """
    height, width = background.shape[:2]
    hand_vertices, hand_faces, skin = hand
    meshes = [Mesh(hand_vertices, hand_faces, colors=np.asarray(skin), smooth=True)]
    if obj is not None:
        object_vertices, object_faces, uvs, texture = obj
        meshes.append(
            Mesh(
                object_vertices,
                object_faces,
                uvs=uvs,
                texture=texture,
                smooth=False,
                cull_back_faces=True,
            )
        )
    out = render_meshes(camera_K, (width, height), meshes, lighting, background)
    return out.image, out.mesh_id == HAND, out.mesh_id == OBJECT
