"""EgoPress core library: hand model, UV atlas, data, EgoPressDiff, training, metrics.

This package never imports rclpy: it runs on training servers without ROS.
"""

__version__ = "0.1.0"
