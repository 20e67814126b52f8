"""Frames from a camera, behind one small interface, for ``UseCamera: true``.

Greengrass's DLR sample components capture a frame from the device's camera
each InferenceInterval. Here a :class:`FrameSource` gives frames as HxWx3 RGB
uint8 arrays (blocking ``read()``: call it from a worker thread), and
:class:`OpenCvCamera` is the implementation: a V4L2 device (``/dev/video0``,
USB cameras and the Raspberry Pi camera through its V4L2 driver), a video file
or a stream URL, read through OpenCV's ``VideoCapture``. OpenCV is optional
(``pip install 'edge-actors[camera]'``); without it, or without a camera, opening
one fails with :class:`CameraUnavailable` saying what to do.
"""

from __future__ import annotations

import glob
import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ActorsError

DEFAULT_SOURCE = "/dev/video0"


class CameraUnavailable(ActorsError, RuntimeError):
    """No frames can be had from the camera source: the message names it and what to do."""


class FrameSource(Protocol):
    """Where frames come from. ``read`` blocks until a frame is there."""

    name: str

    def read(self) -> np.ndarray:
        """The next frame, HxWx3 RGB uint8; raises CameraUnavailable when there is none."""
        ...

    def close(self) -> None: ...


class OpenCvCamera:
    """A camera, video file or stream through OpenCV's ``VideoCapture``."""

    def __init__(self, source: str = DEFAULT_SOURCE) -> None:
        self.name = source
        self._cv2 = _opencv(source)
        if source.startswith("/dev/") and not Path(source).exists():
            found = ", ".join(sorted(glob.glob("/dev/video*"))) or "none on this machine"
            raise CameraUnavailable(
                f"no camera at {source} (video devices: {found}); connect one or name "
                "another source, or set UseCamera to false and give ImageDirectory/ImageName")
        self._capture: Any = self._cv2.VideoCapture(_index_or_path(source))
        if not self._capture.isOpened():
            raise CameraUnavailable(f"OpenCV cannot open the camera source {source}; check "
                                    "the device's permissions (the video group) or the path")

    def read(self) -> np.ndarray:
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise CameraUnavailable(f"the camera source {self.name} gave no frame (unplugged, "
                                    "or the end of a video file)")
        rgb: np.ndarray = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
        return rgb

    def close(self) -> None:
        self._capture.release()


def _opencv(source: str) -> Any:
    try:
        return importlib.import_module("cv2")
    except ImportError:
        raise CameraUnavailable(
            f"reading frames from {source} needs OpenCV: pip install 'edge-actors[camera]' "
            "(opencv-python-headless), or set UseCamera to false") from None


def _index_or_path(source: str) -> int | str:
    """OpenCV opens V4L2 devices by index, more reliably than by path."""
    if source.startswith("/dev/video") and source[len("/dev/video"):].isdigit():
        return int(source[len("/dev/video"):])
    return source


def open_camera(source: str = DEFAULT_SOURCE) -> FrameSource:
    """Open ``source`` (blocking); raises CameraUnavailable naming it and what to do."""
    return OpenCvCamera(source)
