"""Training-time augmentation of 2D input: the wrong and missing joints a detector produces."""
import numpy as np
import torch

from cfi_pose_ros.camera import H36M_REFERENCE_CAMERA as REF, lifter_input_in_reference_view, person_scale, project
from cfi_pose_ros.skeleton import H36M_17
from poses import standing_person
from training.augment import cut_at_image_bottom, displace_joints, drop_joints, virtual_placement


def poses(batch: int = 256) -> torch.Tensor:
    return torch.randn(batch, 17, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_displace_joints_moves_one_joint_by_at_most_the_shift():
    x = poses()
    moved = displace_joints(x, probability=1.0, max_shift=0.4, generator=torch.Generator().manual_seed(1))
    distance = (moved - x).norm(dim=-1)                       # (B, 17)
    assert ((distance > 0).sum(dim=1) <= 1).all()             # one joint per pose (a zero-length move: none)
    assert ((distance > 0).sum(dim=1) == 1).float().mean() > 0.99
    assert distance.max() <= 0.4 + 1e-12 and distance.max() > 0.3
    hit = torch.bincount(distance.argmax(dim=1), minlength=17)
    assert (hit > 0).all()                                    # every joint can be the wrong one


def test_displace_joints_touches_only_the_chosen_share():
    x = poses(4000)
    moved = displace_joints(x, probability=0.25, max_shift=0.4, generator=torch.Generator().manual_seed(2))
    share = float((moved != x).any(dim=(1, 2)).double().mean())
    assert 0.22 < share < 0.28
    assert torch.equal(displace_joints(x, 0.0, 0.4), x)


def test_drop_joints_fills_one_or_two_joints_as_the_node_does():
    x = poses()
    dropped = drop_joints(x, probability=1.0, max_joints=2, generator=torch.Generator().manual_seed(3))
    changed = (dropped != x).any(dim=-1)                      # (B, 17)
    counts = changed.sum(dim=1)
    assert counts.min() >= 1 and counts.max() <= 2 and (counts == 2).any()
    for pose, original, missing in zip(dropped.numpy(), x.numpy(), changed.numpy()):
        np.testing.assert_allclose(pose, H36M_17.fill_missing(original, ~missing), rtol=0, atol=1e-12)
    assert torch.equal(drop_joints(x, 0.0, 2), x)


def test_the_image_bottom_cuts_the_joints_below_a_line_from_the_waist_down_as_the_node_fills_them():
    """A standing person (image y downwards): each chosen pose loses every joint below one line
    between the spine and the feet, filled as the node fills missing joints; the head, shoulders and
    thorax stay; cuts range from the ankles alone to a waist-up view (pelvis and hips gone)."""
    standing = torch.from_numpy(standing_person()[:, :2]).repeat(2000, 1, 1)
    cut = cut_at_image_bottom(standing, probability=1.0, generator=torch.Generator().manual_seed(4))
    missing = (cut != standing).any(dim=-1)                   # (B, 17); a joint filled on itself does not show
    y = standing[0, :, 1]
    for pose, original, gone in zip(cut.numpy()[:200], standing.numpy()[:200], missing.numpy()[:200]):
        if gone.any():          # every joint lower than the highest one gone is gone (a line cut them)
            assert y[gone].min() > y[~gone].max()
        np.testing.assert_allclose(pose, H36M_17.fill_missing(original, ~gone), rtol=0, atol=1e-12)
    for name in ("head", "thorax", "left_shoulder", "right_shoulder", "spine"):
        assert not missing[:, H36M_17.index(name)].any(), name
    ankles_only = missing[:, [3, 6]].all(dim=1) & ~missing[:, [2, 5]].any(dim=1)
    waist_up = missing[:, [1, 4]].all(dim=1)                  # both hips gone, and so every joint below
    assert 0.3 < float(ankles_only.double().mean()) < 0.6 and 0.2 < float(waist_up.double().mean()) < 0.45
    assert (missing[waist_up][:, [2, 3, 5, 6]]).all()
    share = float((cut_at_image_bottom(standing, 0.25, generator=torch.Generator().manual_seed(1)) != standing)
                  .any(dim=(1, 2)).double().mean())
    assert 0.22 < share < 0.28
    assert torch.equal(cut_at_image_bottom(standing, 0.0), standing)


def test_virtual_placement_is_what_the_node_gives_the_lifter_for_that_place():
    """A pose placed at one angle and distance reads as the node's reference view of the same body
    there, seen by another camera (the input the node lifts), and its target stays."""
    pose = standing_person()
    angle_x, angle_y, distance = 10.0, -6.0, 7.5
    tx, ty = np.tan(np.radians([angle_x, angle_y]))
    pelvis = np.array([tx, ty, 1.0]) * distance / np.sqrt(1 + tx ** 2 + ty ** 2)
    webcam = np.array([[1380.0, 0, 960], [0, 1380.0, 540], [0, 0, 1]])
    pixels = (pose + pelvis) @ webcam.T
    node_input, rotations = lifter_input_in_reference_view((pixels[:, :2] / pixels[:, 2:])[None], webcam)
    assert np.allclose(rotations, np.eye(3))            # within the node's cone: not turned
    targets = torch.tensor(pose[None])
    placed = virtual_placement(torch.zeros(1, 17, 2, dtype=torch.float64), targets, 1.0, (distance, distance),
                               ((angle_x, angle_y), (angle_x, angle_y)), REF)
    assert np.abs(placed[0].numpy() - node_input[0]).max() < 1e-9


def test_virtual_placement_spreads_people_over_the_distances_and_angles_asked_for():
    targets = torch.tensor(np.repeat(standing_person()[None], 4000, axis=0))
    inputs = torch.full((4000, 17, 2), 7.0, dtype=torch.float64)
    placed = virtual_placement(inputs, targets, 0.5, (2.0, 15.0), ((-30.0, -20.0), (30.0, 15.0)), REF,
                               torch.Generator().manual_seed(3)).numpy()
    moved = (placed != 7.0).all(axis=(1, 2))
    assert 0.46 < moved.mean() < 0.54 and (placed[~moved] == 7.0).all()
    # size in the image falls as 1 / distance (2-15 m: 7.5x; H36M's 3.3-6.9 m: 2.1x), and grows
    # off the axis (up to 1 / cos(30 deg)^2 = 1.33x)
    scale = person_scale(placed[moved])
    assert 6.5 < scale.max() / scale.min() < 7.5 * 1.34
    # the pelvis' angle off the axis covers the cone asked for, and no more
    pelvis = (placed[moved, 0] + np.array([1.0, REF.height / REF.width])) * REF.width / 2
    angle = np.degrees(np.arctan((pelvis - [REF.cx, REF.cy]) / REF.fx))
    assert np.allclose(angle.min(axis=0), [-30, -20], atol=0.5) and np.allclose(angle.max(axis=0), [30, 15], atol=0.5)
    # nearer people are larger in the image than the training data's largest (the input varies)
    seen_at_h36m = project(standing_person(5.0), REF)
    assert scale.max() > 2 * person_scale(((seen_at_h36m / REF.width) * 2 - [1, REF.height / REF.width])[None])[0]
