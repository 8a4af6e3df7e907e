"""Training-time and test-time augmentation on batched torch tensors."""
from __future__ import annotations

import math

import torch

from cfi_pose_ros.camera import CameraIntrinsics
from cfi_pose_ros.skeleton import H36M_17, JointLayout


def flip_poses(poses: torch.Tensor, layout: JointLayout = H36M_17) -> torch.Tensor:
    """Mirror poses ``(B, J, C)`` about the camera's vertical plane: negate x, swap left/right.

    Valid for screen-normalised 2D (x is centred on 0) and camera-frame 3D alike.
    """
    perm = torch.as_tensor(layout.flip_permutation(), device=poses.device)
    flipped = poses[:, perm].clone()
    flipped[..., 0] = -flipped[..., 0]
    return flipped


def random_flip(inputs_2d: torch.Tensor, targets_3d: torch.Tensor, generator: torch.Generator | None = None,
                probability: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip a random half of the batch (inputs and targets together)."""
    mask = torch.rand(len(inputs_2d), generator=generator, device=inputs_2d.device) < probability
    inputs_2d = torch.where(mask[:, None, None], flip_poses(inputs_2d), inputs_2d)
    targets_3d = torch.where(mask[:, None, None], flip_poses(targets_3d), targets_3d)
    return inputs_2d, targets_3d


def detector_noise(inputs_2d: torch.Tensor, max_std: float, probability: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Add per-joint Gaussian jitter like a 2D detector's, to a random share of the batch.

    Each chosen pose gets a standard deviation drawn uniformly in ``[0, max_std]``
    (screen-normalised units: 0.01 is 5 px on a 1000 px wide image), so the
    model sees clean and noisy input alike and keeps its accuracy on clean 2D.
    """
    if max_std <= 0 or probability <= 0:
        return inputs_2d
    batch = len(inputs_2d)
    chosen = (torch.rand(batch, generator=generator, device=inputs_2d.device) < probability).float()
    std = torch.rand(batch, generator=generator, device=inputs_2d.device) * max_std * chosen
    noise = torch.randn(inputs_2d.shape, generator=generator, device=inputs_2d.device)
    return inputs_2d + noise * std[:, None, None]


def displace_joints(inputs_2d: torch.Tensor, probability: float, max_shift: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Move one random joint of a random share of the batch, like a detector's wrong joint.

    The shift has a uniform length in ``[0, max_shift]`` (screen-normalised units: 0.4 is
    200 px on a 1000 px wide image) and a uniform direction; the 3D target keeps the true
    joint, so the lifter learns not to bend the skeleton towards a joint that does not fit.
    """
    if probability <= 0 or max_shift <= 0:
        return inputs_2d
    batch, joints = inputs_2d.shape[:2]
    device = inputs_2d.device
    chosen = (torch.rand(batch, generator=generator, device=device) < probability).to(inputs_2d.dtype)
    joint = torch.randint(0, joints, (batch,), generator=generator, device=device)
    length = torch.rand(batch, generator=generator, device=device) * max_shift * chosen
    angle = torch.rand(batch, generator=generator, device=device) * (2 * torch.pi)
    shift = torch.stack((torch.cos(angle), torch.sin(angle)), dim=-1) * length[:, None]
    one_joint = torch.nn.functional.one_hot(joint, joints).to(inputs_2d.dtype)
    return inputs_2d + one_joint[..., None] * shift[:, None, :]


def drop_joints(inputs_2d: torch.Tensor, probability: float, max_joints: int, layout: JointLayout = H36M_17,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Make 1 to ``max_joints`` random joints of a random share of the batch missing.

    They are filled exactly as the node fills a joint it has no detection for (or one its
    root solve rejected): :meth:`JointLayout.fill_missing`, so the lifter learns to read
    the folded limbs it will be given.
    """
    if probability <= 0 or max_joints < 1:
        return inputs_2d
    batch, joints = inputs_2d.shape[:2]
    device = inputs_2d.device
    chosen = torch.rand(batch, generator=generator, device=device) < probability
    count = torch.randint(1, max_joints + 1, (batch,), generator=generator, device=device)
    rank = torch.rand(batch, joints, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    missing = chosen[:, None] & (rank < count[:, None])
    return layout.fill_missing(inputs_2d, ~missing)


def cut_at_image_bottom(inputs_2d: torch.Tensor, probability: float, layout: JointLayout = H36M_17,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Make the joints below a random horizontal line missing, in a random share of the batch: a
    person standing close to a robot's camera, the image's bottom edge cutting them off at the
    waist, the knees or the ankles. The line is drawn uniformly between the spine's height and the
    lowest joint's (image y grows downwards), so the cut runs from a waist-up view (pelvis, hips
    and legs missing, as a COCO detector leaves them) to the ankles alone; a wrist hanging below it
    goes too. Missing joints are filled as the node fills them (:meth:`JointLayout.fill_missing`).
    Trained without it, the lifter put the upper body 121 mm off (thorax-relative) when the lower
    body was missing, against 32 mm with every joint (every 50th S9 frame, ``cfi_h36m_wide``, a
    development script); ``benchmarks/bench_cut_people.py`` measures it through the pipeline."""
    if probability <= 0:
        return inputs_2d
    batch = len(inputs_2d)
    device = inputs_2d.device
    chosen = torch.rand(batch, generator=generator, device=device) < probability
    y = inputs_2d[..., 1]
    top = y[:, layout.index("spine")]
    bottom = y.max(dim=1).values
    line = top + torch.rand(batch, generator=generator, device=device, dtype=y.dtype) * (bottom - top)
    missing = chosen[:, None] & (y > line[:, None])
    return layout.fill_missing(inputs_2d, ~missing)


def virtual_placement(inputs_2d: torch.Tensor, targets_3d: torch.Tensor, probability: float,
                      distance_range: tuple[float, float], pelvis_angles_deg, camera: CameraIntrinsics,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace the 2D input of a random share of the batch by what ``camera`` sees of the same
    root-relative pose ``targets_3d`` (camera frame, metres) standing elsewhere: its pelvis at an
    angle off the axis drawn uniformly within ``pelvis_angles_deg`` (``((low_x, low_y), (high_x,
    high_y))``, as :func:`cfi_pose_ros.camera.reference_view` bounds it) and a distance from the
    camera drawn log-uniformly in ``distance_range``. The target stays: moving a body does not
    change its root-relative pose, only its size and perspective in the image, which Human3.6M's
    people (3.3-6.9 m away, within about 14 degrees of the axis) never vary; a robot sees people
    from 1.5 to 15 m and far to the side.
    """
    if probability <= 0:
        return inputs_2d
    batch = len(inputs_2d)
    device, dtype = inputs_2d.device, inputs_2d.dtype

    def uniform(low, high, size=(batch,)):
        return low + (high - low) * torch.rand(size, generator=generator, device=device, dtype=dtype)

    chosen = torch.rand(batch, generator=generator, device=device) < probability
    (low_x, low_y), (high_x, high_y) = pelvis_angles_deg
    tan_x = torch.tan(torch.deg2rad(uniform(low_x, high_x)))
    tan_y = torch.tan(torch.deg2rad(uniform(low_y, high_y)))
    near, far = distance_range
    distance = torch.exp(uniform(math.log(near), math.log(far)))
    depth = distance / torch.sqrt(1.0 + tan_x ** 2 + tan_y ** 2)
    pelvis = torch.stack((tan_x * depth, tan_y * depth, depth), dim=-1)
    joints = targets_3d.to(dtype) + pelvis[:, None, :]
    # a joint at or behind the camera has no image: keep it just in front (only the nearest
    # placements of a body leaning towards the camera come close)
    z = joints[..., 2].clamp(min=0.1)
    u = camera.fx * joints[..., 0] / z + camera.cx
    v = camera.fy * joints[..., 1] / z + camera.cy
    # camera.normalize_screen's formula, in torch: the batch stays on its device
    seen = torch.stack((u / camera.width * 2.0 - 1.0, v / camera.width * 2.0 - camera.height / camera.width), dim=-1)
    return torch.where(chosen[:, None, None], seen, inputs_2d)
