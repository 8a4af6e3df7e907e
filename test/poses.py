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
