"""rclpy nodes and message conversions over egopress_core.

The generated interfaces (``egopress_ros.msg``) are installed by the ament_cmake build into
the install space, while these sources may be imported from the source tree during
development; extending ``__path__`` lets ``egopress_ros.msg`` resolve from either place.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
