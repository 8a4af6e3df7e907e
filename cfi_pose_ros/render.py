"""Headless pictures of :class:`~cfi_pose_ros.markers.MarkerSpec` lists, drawn the way
RViz would show them: a check of the markers without a display or ROS.

Sphere lists become dots, line lists segments, text markers labels, each in its
marker's colour. The scene is drawn with matplotlib's Agg backend (no display,
no pyplot global state, so it is safe to call from any thread).

Markers are normally in the camera optical frame (x right, y down, z forward).
With ``optical_frame=True`` (the default) points are shown in the camera's
REP-103 body frame instead: ``(x, y, z)_view = (z, -x, -y)_optical`` -- x
forward, y left, z up -- so people stand upright, the camera sits at the
origin looking along the view's +x, and the optical frame's own axes are drawn
there (x red, y green, z blue, as RViz draws a TF frame) with a small frustum.
With ``optical_frame=False`` points are drawn as they are (another frame, such as
a robot's ``base_link``), and the camera where ``camera_pose`` (the optical
frame's pose in that frame) puts it; without it, the camera is not drawn.

matplotlib is imported lazily, so importing this module costs nothing.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .markers import MarkerSpec

if TYPE_CHECKING:
    from .frames import RigidTransform

__all__ = ["optical_to_view", "render_markers", "render_animation", "pillow_available", "SceneRenderer", "GifStream",
           "draw_people_2d"]

# view = OPTICAL_TO_VIEW @ optical
OPTICAL_TO_VIEW = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
_AXIS_LENGTH = 0.4
_FIG_SIZE = (6.4, 5.6)
_DPI = 100
# Farthest a joint may be from the image's corner, in pixels, to be drawn: OpenCV takes int32
# coordinates, and one joint of a far-off detection at 1e10 px raised from cv2.line mid-video
# (a person the lifter had rightly read without that joint). Lines to joints within it are clipped.
DRAWABLE_LIMIT_PX = 1 << 20
# RViz's default dark grey background, and light annotations on it
_BACKGROUND = "#303030"
_FOREGROUND = "#d0d0d0"
_GRID = "#5a5a5a"


def pillow_available() -> bool:
    return importlib.util.find_spec("PIL") is not None


def optical_to_view(points: np.ndarray) -> np.ndarray:
    """Camera optical frame ``(..., 3)`` -> view frame (x forward, y left, z up)."""
    return np.asarray(points, dtype=np.float64) @ OPTICAL_TO_VIEW.T


def _to_view(points: np.ndarray, optical_frame: bool) -> np.ndarray:
    return optical_to_view(points) if optical_frame else np.asarray(points, dtype=np.float64)


def _camera_to_view(optical_frame: bool, camera_pose: RigidTransform | None):
    """The function taking points of the camera's optical frame to the view, or None where the
    camera's place in the drawn frame is not known. In another frame than the camera's the camera
    was drawn at that frame's origin, its frustum along that frame's z (up, for a robot's base)."""
    if optical_frame:
        return optical_to_view
    return None if camera_pose is None else camera_pose.apply


def _limits(frames: Sequence[Sequence[MarkerSpec]], optical_frame: bool,
            camera_pose: RigidTransform | None = None) -> tuple[np.ndarray, float]:
    """Centre and half-width of a cube holding every finite point and the camera (where drawn)."""
    camera_to_view = _camera_to_view(optical_frame, camera_pose)
    chunks = [camera_to_view(np.zeros((1, 3)))] if camera_to_view is not None else [np.zeros((0, 3))]
    for markers in frames:
        for m in markers:
            pts = _to_view(m.points, optical_frame)
            chunks.append(pts[np.isfinite(pts).all(-1)])
    pts = np.concatenate(chunks)
    if not len(pts):
        pts = np.zeros((1, 3))
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2.0
    half = max(float((hi - lo).max()) / 2.0 * 1.1, 0.5)
    return centre, half


def _draw_camera(ax, camera_to_view, half: float) -> None:
    length = min(_AXIS_LENGTH, half / 3.0)
    origin = camera_to_view(np.zeros(3))
    for axis, colour in zip(np.eye(3), ("red", "green", "blue")):
        tip = camera_to_view(axis * length)
        ax.plot(*np.stack([origin, tip]).T, color=colour, linewidth=2)
    # small frustum: the optical axis is +z in the optical frame
    d, w, h = length * 0.8, length * 0.5, length * 0.35
    corners = np.array([[-w, -h, d], [w, -h, d], [w, h, d], [-w, h, d]])
    corners = camera_to_view(corners)
    for c in corners:
        ax.plot(*np.stack([origin, c]).T, color=_FOREGROUND, linewidth=0.8)
    ring = np.vstack([corners, corners[:1]])
    ax.plot(*ring.T, color=_FOREGROUND, linewidth=0.8)
    ax.text(*camera_to_view(np.array([0.0, length, 0.0])), "camera", color=_FOREGROUND,
            fontsize=7, ha="center", va="top")


def _style(ax) -> None:
    ax.set_facecolor(_BACKGROUND)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_pane_color(_BACKGROUND)
        axis.line.set_color(_GRID)
        axis.label.set_color(_FOREGROUND)
        try:                                   # no public setter for 3D grid colours
            axis._axinfo["grid"]["color"] = _GRID
        except (AttributeError, KeyError, TypeError):
            pass
    ax.tick_params(colors=_FOREGROUND, labelsize=7)
    ax.title.set_color(_FOREGROUND)


def _draw(ax, markers: Sequence[MarkerSpec], optical_frame: bool, centre: np.ndarray,
          half: float, title: str, elev: float, azim: float, camera_pose: RigidTransform | None = None) -> None:
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    ax.cla()
    _style(ax)
    camera_to_view = _camera_to_view(optical_frame, camera_pose)
    if camera_to_view is not None:
        _draw_camera(ax, camera_to_view, half)
    axis_px = 0.75 * _FIG_SIZE[0] * _DPI          # rough on-screen size of the cube's width
    for m in markers:
        pts = _to_view(m.points, optical_frame)
        if m.type == "sphere_list":
            pts = pts[np.isfinite(pts).all(-1)]
            if len(pts):
                diameter_pt = m.scale[0] / (2.0 * half) * axis_px * 72.0 / _DPI
                ax.scatter(*pts.T, s=max(diameter_pt, 2.0) ** 2, color=m.color[:3],
                           alpha=m.color[3], depthshade=False, edgecolors="none")
        elif m.type == "line_list":
            segments = pts.reshape(-1, 2, 3)
            segments = segments[np.isfinite(segments).all(axis=(1, 2))]
            if len(segments):
                width_pt = m.scale[0] / (2.0 * half) * axis_px * 72.0 / _DPI
                ax.add_collection3d(Line3DCollection(segments, colors=[m.color],
                                                     linewidths=max(width_pt, 1.0)))
        elif m.type == "text" and len(pts) and np.isfinite(pts[0]).all():
            ax.text(*pts[0], m.text, color=m.color[:3], alpha=m.color[3], fontsize=9,
                    ha="center", va="bottom")
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - half, c + half)
    ax.set_box_aspect((1.0, 1.0, 1.0))
    names = ("forward (m)", "left (m)", "up (m)") if optical_frame else ("x (m)", "y (m)", "z (m)")
    ax.set_xlabel(names[0], fontsize=8)
    ax.set_ylabel(names[1], fontsize=8)
    ax.set_zlabel(names[2], fontsize=8)
    ax.view_init(elev=elev, azim=azim)
    if title:
        ax.set_title(title, fontsize=10, color=_FOREGROUND)


def _figure(figsize=_FIG_SIZE):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_DPI, facecolor=_BACKGROUND)
    FigureCanvasAgg(fig)
    return fig


def render_markers(markers: Sequence[MarkerSpec], path: str | Path, title: str = "", *,
                   optical_frame: bool = True, elev: float = 20.0, azim: float = -150.0) -> Path:
    """Draw one scene of markers to a PNG at ``path``; returns the path.

    The default view looks from behind and above the camera, to its right
    (``elev``/``azim`` as matplotlib's ``view_init``).
    """
    path = Path(path)
    centre, half = _limits([markers], optical_frame)
    fig = _figure()
    ax = fig.add_subplot(projection="3d")
    _draw(ax, markers, optical_frame, centre, half, title, elev, azim)
    fig.savefig(path, format="png")
    return path


class GifStream:
    """An animated GIF (looping, ``fps``) written to ``path`` a frame at a time, each frame with a
    colour table of its own (pillow's adaptive palette, as its own GIF writer quantises): pillow's
    ``save(save_all=True)`` and matplotlib's PillowWriter take every frame at once, so offline
    lifting's video fallback held them all in memory until the end (0.85 MB a frame: 511 MB more
    after 600 frames, a 10-minute clip at 30 Hz 15 GB), and render_animation (the demo's GIF) 1.7 MB
    a frame. Written with pillow's GifImagePlugin.getheader / getdata."""

    def __init__(self, path: Path, fps: float):
        self._file = open(path, "wb")
        self._duration_ms = int(1000 / fps)
        self._header_written = False

    def write(self, rgb: np.ndarray) -> None:
        from PIL import GifImagePlugin, Image

        frame = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE)
        if not self._header_written:
            header, _ = GifImagePlugin.getheader(frame, info={"loop": 0, "duration": self._duration_ms})
            self._file.write(b"".join(header))
            self._header_written = True
        self._file.write(b"".join(GifImagePlugin.getdata(frame, include_color_table=True,
                                                         duration=self._duration_ms)))
        self._file.flush()      # each frame in the file once written, none kept back (a frame is 100s of kB)

    def close(self) -> None:
        if self._header_written:
            self._file.write(b";")      # the GIF trailer
        self._file.close()


def render_animation(frames: Sequence[Sequence[MarkerSpec]], path: str | Path, fps: float = 10.0, *,
                     title: str = "", optical_frame: bool = True, elev: float = 20.0,
                     azim: float = -150.0, grid_frames: int = 12) -> Path:
    """Draw a sequence of marker scenes with fixed axes.

    Writes an animated GIF at ``path`` when pillow is installed (it is a
    matplotlib dependency, so normally it is). Without pillow it writes a PNG
    grid of up to ``grid_frames`` evenly sampled frames at ``path`` with the
    suffix ``.png``. Returns the path actually written.
    """
    if not frames:
        raise ValueError("render_animation needs at least one frame")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    centre, half = _limits(frames, optical_frame)

    if pillow_available():
        fig = _figure()
        ax = fig.add_subplot(projection="3d")
        gif = GifStream(path, fps)
        try:
            for i, markers in enumerate(frames):
                label = f"{title}  [{i + 1}/{len(frames)}]" if title else f"frame {i + 1}/{len(frames)}"
                _draw(ax, markers, optical_frame, centre, half, label, elev, azim)
                fig.canvas.draw()
                gif.write(np.asarray(fig.canvas.buffer_rgba())[..., :3])
        finally:
            gif.close()
        return path

    picks = np.unique(np.linspace(0, len(frames) - 1, min(grid_frames, len(frames))).round().astype(int))
    cols = int(np.ceil(np.sqrt(len(picks))))
    rows = int(np.ceil(len(picks) / cols))
    fig = _figure(figsize=(3.2 * cols, 3.0 * rows))
    for k, i in enumerate(picks):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        _draw(ax, frames[i], optical_frame, centre, half, f"frame {i + 1}/{len(frames)}", elev, azim)
    if title:
        fig.suptitle(title, color=_FOREGROUND)
    out = path.with_suffix(".png")
    fig.savefig(out, format="png")
    return out


class SceneRenderer:
    """Marker scenes drawn one after another with the same axes into RGB arrays (the 3D panel of
    offline lifting's video): one figure kept for every frame, so a frame costs one redraw."""

    def __init__(self, frames_for_limits: Sequence[Sequence[MarkerSpec]], size: tuple[int, int] = (640, 560), *,
                 optical_frame: bool = True, camera_pose: RigidTransform | None = None, elev: float = 20.0,
                 azim: float = -150.0):
        self.optical_frame, self.camera_pose, self.elev, self.azim = optical_frame, camera_pose, elev, azim
        self.centre, self.half = _limits(frames_for_limits, optical_frame, camera_pose)
        self.fig = _figure(figsize=(size[0] / _DPI, size[1] / _DPI))
        self.ax = self.fig.add_subplot(projection="3d")

    def render(self, markers: Sequence[MarkerSpec], title: str = "") -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB of one scene."""
        _draw(self.ax, markers, self.optical_frame, self.centre, self.half, title, self.elev, self.azim,
              self.camera_pose)
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()


def draw_people_2d(image_bgr: np.ndarray, people: Sequence[tuple[np.ndarray, np.ndarray, str, str]],
                   min_score: float = 0.05) -> np.ndarray:
    """The 2D skeletons ``(keypoints (K, 2) px, scores (K,), layout name, track id)`` drawn on a
    copy of ``image_bgr``, each person in the colour of their 3D markers; joints at or below
    ``min_score`` (missing), not finite or beyond ``DRAWABLE_LIMIT_PX`` are left out."""
    import cv2

    from .markers import track_color
    from .skeleton import LAYOUTS

    out = image_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for index, (keypoints, scores, layout_name, track_id) in enumerate(people):
        layout = LAYOUTS.get(layout_name)
        if layout is None:
            continue
        r, g, b, _ = track_color(track_id, index)
        colour = (int(b * 255), int(g * 255), int(r * 255))
        kp = np.asarray(keypoints, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = (np.abs(kp) < DRAWABLE_LIMIT_PX).all(-1) & (np.asarray(scores) > min_score)   # NaN: not drawn
        for a, c in layout.edges:
            if ok[a] and ok[c]:
                cv2.line(out, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[c]), colour, thickness,
                         cv2.LINE_AA)
        for point in kp[ok]:
            cv2.circle(out, tuple(int(v) for v in point), thickness + 2, colour, -1, cv2.LINE_AA)
        if track_id and ok.any():
            top = kp[ok][np.argmin(kp[ok][:, 1])]
            cv2.putText(out, track_id, (int(top[0]), max(int(top[1]) - 10, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * thickness, colour, thickness, cv2.LINE_AA)
    return out
