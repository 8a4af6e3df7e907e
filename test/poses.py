"""Hand-made poses shared by the geometry tests."""
import numpy as np


def standing_person(depth: float = 0.0) -> np.ndarray:
    """H36M-17 skeleton facing the camera, camera optical frame (x right, y down, z forward),
    pelvis at (0, 0, depth)."""
    return np.array([
        [0.0, 0.0, 0.0],
        [-0.1, 0.0, 0.0], [-0.1, 0.45, 0.0], [-0.1, 0.9, 0.05],
        [0.1, 0.0, 0.0], [0.1, 0.45, 0.0], [0.1, 0.9, 0.05],
        [0.0, -0.25, 0.0], [0.0, -0.5, 0.0], [0.0, -0.6, -0.08], [0.0, -0.7, 0.0],
        [0.18, -0.5, 0.0], [0.2, -0.25, 0.0], [0.22, 0.0, -0.05],
        [-0.18, -0.5, 0.0], [-0.2, -0.25, 0.0], [-0.22, 0.0, -0.05],
    ]) + np.array([0.0, 0.0, depth])


# A wide-angle camera as ROS's camera_calibration describes one: 1280x800, 90 degrees across as a
# pinhole, about 108 through its lens (plumb_bob, k1 = -0.30).
WIDE_SIZE = (1280, 800)
WIDE_K = np.array([[640.0, 0.0, 639.5], [0.0, 640.0, 399.5], [0.0, 0.0, 1.0]])
WIDE_LENS = ("plumb_bob", [-0.30, 0.09, 0.0005, -0.0003, 0.0])


def wide_angle_view(pose: np.ndarray, root: np.ndarray, camera: np.ndarray = WIDE_K
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(raw pixels, ideal pinhole pixels, joints)``: ``pose`` (17, 3) scaled to the prior body size
    (so that the camera is the only error besides the lifter's shape), its pelvis at ``root`` in
    front of the wide-angle camera (``camera``: the matrix the ideal pixels are projected with);
    the raw pixels are the ideal ones of ``WIDE_K`` through ``WIDE_LENS``."""
    from cfi_pose_ros.camera import distort_pixels, lens_distortion
    from cfi_pose_ros.skeleton import H36M_17

    rel = np.asarray(pose, dtype=np.float64) - pose[:1]
    joints = rel / H36M_17.size_relative_to_mean(rel) + root

    def project(matrix):
        uvw = joints @ np.asarray(matrix).T
        return uvw[:, :2] / uvw[:, 2:]

    return distort_pixels(project(WIDE_K), WIDE_K, lens_distortion(*WIDE_LENS)), project(camera), joints
