"""The rosbags type store with the package's own messages, registered from the ``.msg`` files.

``rosbags`` ships the standard ROS 2 types (``sensor_msgs``, ``geometry_msgs``, ...) but not
``egopress_ros/msg/HandMesh``, ``UVPressure`` and ``HandContact``. They are parsed from the
package's ``msg/*.msg`` files with :func:`rosbags.typesys.get_types_from_msg`, so the definitions
the labeller writes are the ones the ROS build generates (same RIHS01 type hashes, checked by
``test_rosbag_messages.py`` against the colcon build's type descriptions).

The ``.msg`` folder is looked up in this order: ``$EGOPRESS_MSG_DIR``; the source tree's
``msg/`` (a git checkout or ``pip install -e``); ``share/egopress_ros/msg`` under every prefix
of ``$AMENT_PREFIX_PATH`` (a colcon install or a sourced ROS workspace).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from egopress_core.errors import ConfigError

PACKAGE = "egopress_ros"
CUSTOM_MESSAGES = ("HandMesh", "UVPressure", "HandContact")

HAND_MESH = f"{PACKAGE}/msg/HandMesh"
UV_PRESSURE = f"{PACKAGE}/msg/UVPressure"
HAND_CONTACT = f"{PACKAGE}/msg/HandContact"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"

# rosbag2's separator between a message definition and the definitions it depends on.
_DEFINITION_SEPARATOR = "=" * 80 + "\n"


def msg_dir_candidates() -> list[Path]:
    """Folders that may hold the package's ``.msg`` files, in lookup order."""
    candidates: list[Path] = []
    override = os.environ.get("EGOPRESS_MSG_DIR")
    if override:
        candidates.append(Path(override))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    return candidates


def find_msg_dir() -> Path:
    """The first candidate folder holding all of ``HandMesh.msg``, ``UVPressure.msg`` and
    ``HandContact.msg``.

    Raises:
        ConfigError: none does (the message lists where it looked).
    """
    candidates = msg_dir_candidates()
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in CUSTOM_MESSAGES):
            return folder
    looked = ", ".join(str(folder) for folder in candidates)
    raise ConfigError(
        f"cannot find the {PACKAGE} message definitions ({', '.join(n + '.msg' for n in CUSTOM_MESSAGES)}); "
        f"looked in: {looked}. Set EGOPRESS_MSG_DIR to the package's msg/ folder or source its ROS workspace"
    )


@lru_cache(maxsize=4)
def _typestore(msg_dir: str):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in CUSTOM_MESSAGES:
        path = Path(msg_dir) / f"{name}.msg"
        try:
            types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{name}"))
        except Exception as error:  # noqa: BLE001 - rosbags' parser raises several kinds
            raise ConfigError(f"{path}: not a valid ROS 2 message definition ({error})") from error
    store.register(types)
    return store


def egopress_typestore(msg_dir: str | os.PathLike | None = None):
    """A rosbags ``Typestore`` (ROS 2 Kilted standard types) with the package's messages added.

    Args:
        msg_dir: folder of the ``.msg`` files; None: :func:`find_msg_dir`.

    The store is cached per folder; treat it as read-only.
    """
    folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    return _typestore(str(folder.resolve()))


def message_definition(store, msgtype: str, msg_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """(definition text, RIHS01 hash) of ``msgtype`` as rosbag2 stores it with a connection.

    The text is the ``ros2msg`` format: the type's own definition, then each type it depends on
    after a line of 80 ``=`` and ``MSG: <type>``. For the package's own messages the first part
    is the ``.msg`` file itself, comments included (units and conventions travel with the bag);
    rosbags generates the rest.
    """
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    package, _, name = msgtype.partition("/msg/")
    if package == PACKAGE and name in CUSTOM_MESSAGES:
        folder = Path(msg_dir) if msg_dir is not None else find_msg_dir()
        own = (folder / f"{name}.msg").read_text().strip() + "\n"
        _, separator, dependencies = text.partition(_DEFINITION_SEPARATOR)
        text = own + (separator + dependencies if separator else "")
    return text, store.hash_rihs01(msgtype)
