"""Category ids and fixed sizes shared across the package."""

HAND_CLASS = 0  # category_id of hand annotations and detections
OBJECT_CLASS = 1  # category_id of the (single) manipulated object
CLASS_NAMES = ("hand", "object")

NUM_JOINTS = 21  # hand joints, manopth order (see geometry.JOINT_NAMES)
NUM_MANO_JOINTS = 16  # MANO's kinematic joints
NUM_MANO_VERTICES = 778
NUM_MANO_FACES = 1538
NUM_CONTROL_POINTS = 21  # object: 8 box corners, 12 edge midpoints, centre
