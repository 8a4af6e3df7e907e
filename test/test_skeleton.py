"""Joint layouts and the COCO-17 -> H36M-17 conversion."""
import numpy as np
import pytest

from cfi_pose_ros.skeleton import (COCO_17, H36M_17, H36M_32_TO_17, LAYOUTS, coco17_to_h36m17,
                                   convert_to_h36m17)

# The standard 17-joint protocol (README of the Human3.6M data).
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
H36M_LEFT = (4, 5, 6, 11, 12, 13)
H36M_RIGHT = (1, 2, 3, 14, 15, 16)


def coco_index(name: str) -> int:
    return COCO_17.index(name)


def random_coco(rng: np.random.Generator, shape=()) -> np.ndarray:
    return rng.uniform(0, 1000, shape + (17, 2))


def test_h36m_layout_matches_protocol():
    assert H36M_17.num_joints == 17
    assert H36M_17.parents == H36M_PARENTS
    assert set(H36M_17.left_joints) == set(H36M_LEFT)
    assert set(H36M_17.right_joints) == set(H36M_RIGHT)
    assert H36M_32_TO_17 == (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
    assert LAYOUTS["h36m_17"] is H36M_17 and LAYOUTS["coco_17"] is COCO_17


@pytest.mark.parametrize("layout", [H36M_17, COCO_17], ids=lambda l: l.name)
def test_layout_consistency(layout):
    n = layout.num_joints
    assert len(set(layout.joint_names)) == n
    if layout.parents is not None:
        assert len(layout.parents) == n
        assert layout.parents[0] == -1 and list(layout.parents).count(-1) == 1
        # parents come before children, so forward kinematics can run in index order
        assert all(0 <= p < c for c, p in enumerate(layout.parents) if c > 0)
        assert len(layout.edges) == n - 1
    for a, b in layout.edges:
        assert 0 <= a < n and 0 <= b < n and a != b
    adj = layout.adjacency()
    assert np.array_equal(adj, adj.T)
    assert len({frozenset(e) for e in layout.edges}) == len(layout.edges)     # no duplicates
    assert adj.sum(axis=1).min() >= 1                                        # no isolated joint
    assert np.array_equal(layout.adjacency(self_loops=True), adj + np.eye(n))


@pytest.mark.parametrize("layout", [H36M_17, COCO_17], ids=lambda l: l.name)
def test_flip_permutation_swaps_left_and_right(layout):
    perm = layout.flip_permutation()
    assert sorted(perm) == list(range(layout.num_joints))
    assert np.array_equal(perm[perm], np.arange(layout.num_joints))        # an involution
    for left, right in layout.flip_pairs:
        assert layout.joint_names[left].startswith("left_")
        assert layout.joint_names[right] == layout.joint_names[left].replace("left_", "right_")
        assert perm[left] == right and perm[right] == left
    paired = set(layout.left_joints) | set(layout.right_joints)
    for j in range(layout.num_joints):
        if j not in paired:
            assert perm[j] == j
            assert not layout.joint_names[j].startswith(("left_", "right_"))


def test_h36m_tree_is_connected():
    adj = H36M_17.adjacency()
    seen, todo = {0}, [0]
    while todo:
        j = todo.pop()
        for k in np.flatnonzero(adj[j]):
            if int(k) not in seen:
                seen.add(int(k))
                todo.append(int(k))
    assert seen == set(range(17))


def test_flip_preserves_bones():
    """Mirroring maps every bone onto a bone, so a flipped skeleton is a skeleton."""
    for layout in (H36M_17, COCO_17):
        perm = layout.flip_permutation()
        edges = {frozenset(e) for e in layout.edges}
        assert {frozenset((perm[a], perm[b])) for a, b in layout.edges} == edges
    perm = H36M_17.flip_permutation()
    assert all(H36M_17.parents[perm[c]] == (-1 if p < 0 else perm[p])
               for c, p in enumerate(H36M_17.parents))


def test_coco_to_h36m_puts_each_joint_where_defined():
    rng = np.random.default_rng(0)
    coco = random_coco(rng)
    out, scores = coco17_to_h36m17(coco)
    c = {name: coco[coco_index(name)] for name in COCO_17.joint_names}
    h = {name: out[H36M_17.index(name)] for name in H36M_17.joint_names}
    mid_hips = (c["left_hip"] + c["right_hip"]) / 2
    mid_shoulders = (c["left_shoulder"] + c["right_shoulder"]) / 2
    np.testing.assert_allclose(h["pelvis"], mid_hips)
    np.testing.assert_allclose(h["thorax"], mid_shoulders)
    np.testing.assert_allclose(h["spine"], (mid_hips + mid_shoulders) / 2)
    np.testing.assert_allclose(h["neck_nose"], c["nose"])
    np.testing.assert_allclose(h["head"], (c["left_eye"] + c["right_eye"]) / 2)
    for side in ("left", "right"):
        for joint in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist"):
            np.testing.assert_array_equal(h[f"{side}_{joint}"], c[f"{side}_{joint}"])
    assert out.shape == (17, 2) and scores.shape == (17,)
    np.testing.assert_array_equal(scores, 1.0)


def test_coco_to_h36m_scores_are_lowest_source_score():
    rng = np.random.default_rng(1)
    coco = random_coco(rng)
    coco_scores = rng.uniform(0.1, 1.0, 17)
    _, scores = coco17_to_h36m17(coco, coco_scores)
    s = {name: coco_scores[coco_index(name)] for name in COCO_17.joint_names}
    assert scores[H36M_17.index("pelvis")] == min(s["left_hip"], s["right_hip"])
    assert scores[H36M_17.index("spine")] == min(s["left_hip"], s["right_hip"],
                                                 s["left_shoulder"], s["right_shoulder"])
    assert scores[H36M_17.index("left_wrist")] == s["left_wrist"]
    assert scores[H36M_17.index("neck_nose")] == s["nose"]


def test_coco_to_h36m_keeps_extra_channels():
    coco = np.random.default_rng(2).uniform(0, 1, (17, 3))
    out, _ = coco17_to_h36m17(coco)
    assert out.shape == (17, 3)
    np.testing.assert_allclose(out[H36M_17.index("pelvis")],
                               (coco[coco_index("left_hip")] + coco[coco_index("right_hip")]) / 2)


@pytest.mark.parametrize("how", ["nan", "score0", "below_min"])
def test_missing_sources_make_missing_targets(how):
    rng = np.random.default_rng(3)
    coco = random_coco(rng)
    coco_scores = np.full(17, 0.9)
    gone = coco_index("left_hip")
    if how == "nan":
        coco[gone] = np.nan
    elif how == "score0":
        coco_scores[gone] = 0.0
    else:
        coco_scores[gone] = 0.2
    out, scores = coco17_to_h36m17(coco, coco_scores, min_score=0.3 if how == "below_min" else 0.0)
    depends_on_left_hip = {"pelvis", "spine", "left_hip"}
    for j, name in enumerate(H36M_17.joint_names):
        if name in depends_on_left_hip:
            assert np.all(np.isnan(out[j])), name
            assert scores[j] == 0.0, name
        else:
            assert np.all(np.isfinite(out[j])), name
            assert scores[j] == pytest.approx(0.9), name


def test_one_nan_coordinate_counts_as_missing():
    coco = random_coco(np.random.default_rng(4))
    coco[coco_index("nose"), 1] = np.nan
    out, scores = coco17_to_h36m17(coco)
    j = H36M_17.index("neck_nose")
    assert np.all(np.isnan(out[j])) and scores[j] == 0.0
    assert np.isfinite(np.delete(out, j, axis=0)).all()


def test_missing_eye_only_drops_head():
    coco = random_coco(np.random.default_rng(5))
    coco_scores = np.ones(17)
    coco_scores[coco_index("right_eye")] = 0.0
    out, scores = coco17_to_h36m17(coco, coco_scores)
    missing = {H36M_17.joint_names[j] for j in range(17) if scores[j] == 0}
    assert missing == {"head"}


def test_batch_shapes_match_single_conversion():
    rng = np.random.default_rng(6)
    coco = random_coco(rng, (4, 3))
    coco_scores = rng.uniform(0, 1, (4, 3, 17))
    coco[1, 2, 5] = np.nan
    out, scores = coco17_to_h36m17(coco, coco_scores)
    assert out.shape == (4, 3, 17, 2) and scores.shape == (4, 3, 17)
    for i in range(4):
        for k in range(3):
            single, single_scores = coco17_to_h36m17(coco[i, k], coco_scores[i, k])
            np.testing.assert_array_equal(out[i, k], single)
            np.testing.assert_array_equal(scores[i, k], single_scores)


def test_wrong_joint_count_raises():
    with pytest.raises(ValueError):
        coco17_to_h36m17(np.zeros((18, 2)))
    with pytest.raises(ValueError):
        convert_to_h36m17("h36m_17", np.zeros((16, 2)))


def test_convert_dispatches_by_layout():
    rng = np.random.default_rng(7)
    coco = random_coco(rng, (2,))
    out, scores = convert_to_h36m17("coco_17", coco)
    ref, ref_scores = coco17_to_h36m17(coco)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(scores, ref_scores)

    h36m = rng.uniform(0, 1000, (2, 17, 2))
    h36m[0, 3] = np.nan
    out, scores = convert_to_h36m17("h36m_17", h36m, np.full((2, 17), 0.7))
    np.testing.assert_array_equal(out, h36m)
    assert scores[0, 3] == 0.0
    assert np.all(np.delete(scores.ravel(), 3) == 0.7)
    _, default_scores = convert_to_h36m17("h36m_17", h36m)
    assert default_scores[1].tolist() == [1.0] * 17


def test_convert_unknown_layout_raises():
    with pytest.raises(ValueError, match="unknown joint layout"):
        convert_to_h36m17("openpose_25", np.zeros((25, 2)))


def test_mirror_negates_x_and_swaps_left_and_right():
    poses = np.arange(2 * 17 * 3, dtype=np.float64).reshape(2, 17, 3)
    mirrored = H36M_17.mirror(poses)
    assert mirrored[0, 4, 0] == -poses[0, 1, 0] and mirrored[0, 4, 1] == poses[0, 1, 1]
    assert mirrored[1, 16, 2] == poses[1, 13, 2] and mirrored[0, 0, 0] == -poses[0, 0, 0]
    np.testing.assert_array_equal(H36M_17.mirror(mirrored), poses)
    assert H36M_17.mirror(poses[0]).shape == (17, 3)


def test_fill_missing_uses_the_nearest_valid_ancestor():
    keypoints = np.arange(34, dtype=float).reshape(17, 2)
    valid = np.ones(17, dtype=bool)
    valid[[12, 13]] = False                      # left elbow and wrist lost
    filled = H36M_17.fill_missing(np.where(valid[:, None], keypoints, np.nan), valid)
    assert np.array_equal(filled[12], keypoints[11]) and np.array_equal(filled[13], keypoints[11])
    assert np.array_equal(filled[valid], keypoints[valid])


def test_fill_missing_root_takes_the_mean_and_passes_it_down():
    keypoints = np.random.default_rng(0).normal(size=(17, 2))
    valid = np.ones(17, dtype=bool)
    valid[[0, 1, 2]] = False                     # pelvis, right hip and knee lost
    filled = H36M_17.fill_missing(np.where(valid[:, None], keypoints, np.nan), valid)
    mean = keypoints[valid].mean(axis=0)
    for joint in (0, 1, 2):
        np.testing.assert_allclose(filled[joint], mean)
    np.testing.assert_array_equal(filled[3], keypoints[3])   # the ankle was seen: kept


def test_fill_missing_is_the_same_for_numpy_and_torch_batches():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    keypoints = rng.normal(size=(64, 17, 2))
    valid = rng.random((64, 17)) > 0.4
    valid[0] = False                             # nobody valid: unchanged
    expected = np.stack([H36M_17.fill_missing(k, v) for k, v in zip(keypoints, valid)])
    np.testing.assert_array_equal(expected[0], keypoints[0])
    batched = H36M_17.fill_missing(keypoints, valid)
    np.testing.assert_allclose(batched, expected, rtol=0, atol=1e-12)
    as_torch = H36M_17.fill_missing(torch.from_numpy(keypoints), torch.from_numpy(valid))
    np.testing.assert_allclose(as_torch.numpy(), expected, rtol=0, atol=1e-12)


def test_a_layout_whose_parent_follows_its_child_is_refused():
    from cfi_pose_ros.skeleton import JointLayout
    with pytest.raises(ValueError, match="parent must come before"):
        JointLayout("bad", ("a", "b"), parents=(1, -1), flip_pairs=())


def _body_with_bone_lengths(lengths: np.ndarray, seed: int = 0) -> np.ndarray:
    """An H36M_17 skeleton whose bones, in random directions, have the given lengths."""
    directions = np.random.default_rng(seed).normal(size=(17, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    joints = np.zeros((17, 3))
    for joint, parent in enumerate(H36M_17.parents):
        if parent >= 0:
            joints[joint] = joints[parent] + lengths[joint] * directions[joint]
    return joints


def test_size_against_the_mean_body_is_robust_to_one_limb():
    mean = np.array(H36M_17.mean_bone_lengths)
    assert mean[0] == 0.0 and 4.1 < mean.sum() < 4.2             # Human3.6M's training subjects
    np.testing.assert_array_equal(mean[H36M_17.flip_permutation()], mean)   # left and right alike
    body = _body_with_bone_lengths(mean)
    assert H36M_17.size_relative_to_mean(body) == pytest.approx(1.0)
    assert H36M_17.size_relative_to_mean(1.2 * body + 5.0) == pytest.approx(1.2)   # scale, not place
    stretched = _body_with_bone_lengths(mean * np.where(np.arange(17) == 13, 3.0, 1.0))  # a wrist 3x out
    assert H36M_17.size_relative_to_mean(stretched) == pytest.approx(1.0)
    batch = np.stack([body, 0.8 * body, np.full((17, 3), np.nan)])
    sizes = H36M_17.size_relative_to_mean(batch)
    np.testing.assert_allclose(sizes[:2], [1.0, 0.8])
    assert np.isnan(sizes[2])
    with pytest.raises(ValueError, match="no mean bone lengths"):
        COCO_17.size_relative_to_mean(np.zeros((17, 3)))
