import numpy as np
import pytest

from cfi_pose_ros import render
from cfi_pose_ros.markers import MarkerSpec, skeleton_markers
from cfi_pose_ros.render import optical_to_view, render_animation, render_markers
from poses import standing_person

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return width, height


def test_optical_to_view():
    # optical: x right, y down, z forward -> view: x forward, y left, z up
    np.testing.assert_array_equal(optical_to_view([0.0, 0.0, 2.0]), [2.0, 0.0, 0.0])
    np.testing.assert_array_equal(optical_to_view([1.0, 0.0, 0.0]), [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(optical_to_view([0.0, 1.0, 0.0]), [0.0, 0.0, -1.0])
    assert np.isclose(np.linalg.det(render.OPTICAL_TO_VIEW), 1.0)


def test_render_markers_writes_png(tmp_path):
    kp2 = standing_person(3.0) + [1.0, 0.0, 1.0]
    kp2[5] = np.nan
    markers = skeleton_markers(0, "alice", standing_person(3.0)) + skeleton_markers(1, "", kp2)
    out = render_markers(markers, tmp_path / "scene.png", title="two people")
    assert out == tmp_path / "scene.png"
    assert out.stat().st_size > 1000
    width, height = png_size(out)
    assert width > 100 and height > 100


def test_render_is_not_blank(tmp_path):
    from PIL import Image

    red = (1.0, 0.0, 0.0, 1.0)
    markers = [MarkerSpec("t", 0, "sphere_list", standing_person(3.0), red, (0.1, 0.1, 0.1)),
               MarkerSpec("t", 1, "line_list", standing_person(3.0)[:2], red, (0.05, 0.0, 0.0))]
    out = render_markers(markers, tmp_path / "red.png", optical_frame=False)
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    reddish = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert reddish.sum() > 20


def test_render_empty_and_degenerate_scenes(tmp_path):
    assert png_size(render_markers([], tmp_path / "empty.png"))[0] > 0
    one = [MarkerSpec("t", 0, "text", [[0.0, 0.0, 1.0]], (1, 1, 1, 1), (0, 0, 0.1), text="hi"),
           MarkerSpec("t", 1, "line_list", np.zeros((0, 3)), (1, 1, 1, 1), (0.02, 0, 0)),
           MarkerSpec("t", 2, "sphere_list", [[np.nan, 0.0, 1.0]], (1, 1, 1, 1), (0.1, 0.1, 0.1))]
    assert png_size(render_markers(one, str(tmp_path / "one.png")))[0] > 0


def frames(n):
    return [skeleton_markers(0, "bob", standing_person(3.0) + [0.3 * i, 0.0, 0.2 * i]) for i in range(n)]


def test_render_animation_gif(tmp_path):
    out = render_animation(frames(3), tmp_path / "walk.gif", fps=5)
    assert out == tmp_path / "walk.gif"
    data = out.read_bytes()
    assert data[:6] in (b"GIF87a", b"GIF89a")
    from PIL import Image
    with Image.open(out) as im:
        assert im.n_frames == 3


def test_render_animation_writes_each_frame_as_it_is_drawn(tmp_path):
    """matplotlib's PillowWriter kept every frame (1.7 MB each at the demo's figure size: peak RSS 120
    MB for 20 frames, 431 MB for 200) and wrote the GIF when the animation ended; the demo's GIF of a
    long --frames run held them all. Each frame is in the file by the time the next is drawn."""
    from collections.abc import Sequence

    from PIL import Image

    path = tmp_path / "walk.gif"
    scenes = frames(4)
    sizes_when_drawn = []

    class Watched(Sequence):
        def __len__(self):
            return len(scenes)

        def __getitem__(self, i):
            sizes_when_drawn.append(path.stat().st_size if path.exists() else 0)
            return scenes[i]

    assert render_animation(Watched(), path, fps=5) == path
    drawn = sizes_when_drawn[-4:]       # the drawing pass, after the one that sets the axes' limits
    assert all(later > earlier for earlier, later in zip(drawn, drawn[1:])), sizes_when_drawn
    with Image.open(path) as gif:
        assert (gif.n_frames, gif.info["duration"], gif.info["loop"]) == (4, 200, 0)


def test_render_animation_grid_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "pillow_available", lambda: False)
    out = render_animation(frames(5), tmp_path / "walk.gif", fps=5, title="walk", grid_frames=4)
    assert out == tmp_path / "walk.png"
    width, height = png_size(out)
    assert width > 300 and height > 300


def test_render_animation_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        render_animation([], tmp_path / "x.gif")
    with pytest.raises(ValueError):
        render_animation(frames(1), tmp_path / "x.gif", fps=0)


def test_2d_skeletons_leave_out_joints_no_image_can_hold():
    """One joint of a far-off detection at 1e10 px (the lifter rightly lifted the person without
    it) raised from cv2.line in the offline video writer, leaving a half-written video; NaN too.
    Such joints are left out, the rest is drawn, and the same person without them draws alike."""
    from cfi_pose_ros.render import draw_people_2d
    from cfi_pose_ros.skeleton import H36M_17

    image = np.zeros((240, 320, 3), np.uint8)
    keypoints = np.column_stack([np.linspace(40, 280, 17), np.linspace(30, 210, 17)])
    scores = np.ones(17)
    far = keypoints.copy()
    far[5] = (1e10, 300.0)
    far[6] = (np.nan, 10.0)
    without = scores.copy()
    without[5:7] = 0.0
    drawn = draw_people_2d(image, [(far, scores, H36M_17.name, "7")])
    assert drawn.any() and np.array_equal(drawn, draw_people_2d(image, [(keypoints, without, H36M_17.name, "7")]))


def test_in_another_frame_the_camera_is_drawn_where_its_pose_puts_it():
    """Offline video with --target-frame: the camera was drawn at the target frame's origin with
    its frustum along that frame's z (up), whatever target_from_camera said (here 1.5 m up, looking
    along +x, as a robot's base_link would have it)."""
    from cfi_pose_ros.frames import RigidTransform

    base_from_camera = RigidTransform.from_xyz_quaternion([0.0, 0.0, 1.5, -0.5, 0.5, -0.5, 0.5])
    people = skeleton_markers(0, "alice", base_from_camera.apply(standing_person(3.0)))
    placed = render.SceneRenderer([people], optical_frame=False, camera_pose=base_from_camera)
    placed.render(people)
    x_axis, y_axis, z_axis = (np.array(line.get_data_3d()) for line in placed.ax.lines[:3])
    np.testing.assert_allclose(x_axis[:, 0], [0.0, 0.0, 1.5], atol=1e-9)          # the camera, 1.5 m up
    np.testing.assert_allclose(np.diff(z_axis, axis=1)[:, 0] / np.linalg.norm(np.diff(z_axis, axis=1)),
                               [1.0, 0.0, 0.0], atol=1e-9)                          # looking along +x
    unknown = render.SceneRenderer([people], optical_frame=False)                  # no pose: not drawn
    unknown.render(people)
    assert not any(line.get_color() == "red" for line in unknown.ax.lines)
