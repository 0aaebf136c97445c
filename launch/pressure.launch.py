"""Live hand pressure from an egocentric RGB-D camera.

    ros2 launch egopress_ros pressure.launch.py
    ros2 launch egopress_ros pressure.launch.py camera_namespace:=/head_camera checkpoint:=/data/my_ckpt device:=cuda
    ros2 launch egopress_ros pressure.launch.py backend:=keypoints use_sim_time:=true   # replaying a bag
    ros2 launch egopress_ros pressure.launch.py input_reliability:=reliable   # a camera publishing reliable

Starts the hand mesh node and the pressure node (lifecycle nodes that configure and activate
themselves, parameter ``autostart``) in ``namespace`` (default ``egopress``), with their camera
inputs remapped to ``<camera_namespace>/<color_topic>`` etc. The defaults are realsense2_camera's
(4.x) topics: /camera/camera/color/image_raw, /camera/camera/aligned_depth_to_color/image_raw
(start the camera with align_depth.enable:=true), /camera/camera/color/camera_info.

Parameters come from ``config_file`` (default: the installed config/pressure.yaml); the
checkpoint, device, backend, hand_side and input_reliability arguments override it when they are
not empty; use_sim_time is always set from its argument. ``rviz:=true`` also opens RViz with
config/egopress.rviz.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "egopress_ros"
TRUE_WORDS = ("true", "1", "yes", "on")


def _camera_topic(namespace, name):
    """``name`` inside ``namespace`` (an absolute ``name`` is kept as it is)."""
    if name.startswith("/"):
        return name
    parts = [part.strip("/") for part in (namespace, name) if part.strip("/")]
    return "/" + "/".join(parts)


def _launch_setup(context):
    def argument(name):
        return LaunchConfiguration(name).perform(context)

    camera = argument("camera_namespace")
    camera_inputs = [
        ("color/image_raw", _camera_topic(camera, argument("color_topic"))),
        ("aligned_depth_to_color/image_raw", _camera_topic(camera, argument("depth_topic"))),
        ("color/camera_info", _camera_topic(camera, argument("camera_info_topic"))),
    ]
    use_sim_time = argument("use_sim_time").strip().lower() in TRUE_WORDS
    hand_mesh_parameters = {"use_sim_time": use_sim_time}
    pressure_parameters = {"use_sim_time": use_sim_time}
    if argument("hand_side"):
        hand_mesh_parameters["hand_side"] = argument("hand_side")
        pressure_parameters["hand_side"] = argument("hand_side")
    if argument("input_reliability"):
        hand_mesh_parameters["input_reliability"] = argument("input_reliability")
        pressure_parameters["input_reliability"] = argument("input_reliability")
    if argument("backend"):
        hand_mesh_parameters["backend"] = argument("backend")
    if argument("checkpoint"):
        pressure_parameters["checkpoint"] = argument("checkpoint")
    if argument("device"):
        pressure_parameters["device"] = argument("device")
    config_file = argument("config_file")
    namespace = argument("namespace")

    actions = [
        Node(
            package=PACKAGE,
            executable="hand_mesh_node",
            name="hand_mesh_node",
            namespace=namespace,
            parameters=[config_file, hand_mesh_parameters],
            remappings=camera_inputs + [("hand_keypoints", argument("keypoints_topic"))],
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="pressure_node",
            name="pressure_node",
            namespace=namespace,
            parameters=[config_file, pressure_parameters],
            remappings=camera_inputs,
            output="screen",
            emulate_tty=True,
        ),
    ]
    if argument("rviz").strip().lower() in TRUE_WORDS:
        actions.append(Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", argument("rviz_config")],
            parameters=[{"use_sim_time": use_sim_time}],
            output="screen",
        ))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("namespace", default_value="egopress",
                              description="Namespace of the two nodes and their outputs."),
        DeclareLaunchArgument("camera_namespace", default_value="/camera/camera",
                              description="Namespace of the camera topics (realsense2_camera 4.x: /camera/camera)."),
        DeclareLaunchArgument("color_topic", default_value="color/image_raw",
                              description="Colour image, relative to camera_namespace (or absolute)."),
        DeclareLaunchArgument("depth_topic", default_value="aligned_depth_to_color/image_raw",
                              description="Depth image aligned to colour, relative to camera_namespace (or absolute)."),
        DeclareLaunchArgument("camera_info_topic", default_value="color/camera_info",
                              description="Colour camera_info, relative to camera_namespace (or absolute)."),
        DeclareLaunchArgument("keypoints_topic", default_value="hand_keypoints",
                              description="21 hand keypoints (PointCloud2) for backend keypoints; relative to namespace."),
        DeclareLaunchArgument("config_file", default_value=os.path.join(share, "config", "pressure.yaml"),
                              description="Parameter file of both nodes."),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="checkpoint folder of either model kind (empty: the config file's)."),
        DeclareLaunchArgument("device", default_value="",
                              description="Torch device of the pressure model, e.g. cpu or cuda (empty: the config file's)."),
        DeclareLaunchArgument("backend", default_value="",
                              description="Hand-mesh backend: mediapipe or keypoints (empty: the config file's)."),
        DeclareLaunchArgument("hand_side", default_value="",
                              description="right or left (empty: the config file's)."),
        DeclareLaunchArgument("input_reliability", default_value="",
                              description="QoS reliability of both nodes' camera subscriptions: best_effort "
                                          "(sensor-data QoS, matches every publisher) or reliable (empty: the config "
                                          "file's)."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock (true when replaying a bag with --clock)."),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz."),
        DeclareLaunchArgument("rviz_config", default_value=os.path.join(share, "config", "egopress.rviz"),
                              description="RViz configuration."),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=_launch_setup)])
