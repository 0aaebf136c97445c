"""Topic names of the sample bag (RealSense ROS 2 wrapper layout) and the label-bag defaults.

Kept free of imports so that the command line can show them without loading numpy.
"""

COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
DEPTH_CAMERA_INFO_TOPIC = "/camera/aligned_depth_to_color/camera_info"
GROUND_TRUTH_MESH_TOPIC = "/ground_truth/hand_mesh"
GROUND_TRUTH_KEYPOINTS_TOPIC = "/ground_truth/hand_keypoints"
GROUND_TRUTH_CONTACT_TOPIC = "/ground_truth/hand_contact"
COLOR_FRAME_ID = "camera_color_optical_frame"

# The label-bag / label-bags option naming each input role's topic (the command line's flags and
# the hints of error messages).
TOPIC_OPTIONS = {"color": "--camera-topic", "depth": "--depth-topic", "camera_info": "--info-topic",
                 "hand_mesh": "--hand-mesh-topic", "keypoints": "--keypoints-topic"}
