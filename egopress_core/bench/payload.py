"""The numpy side of the pressure node's messages, timed per streaming frame by `egopress bench`
(the library never imports rclpy; ``benchmarks/speed.py --ros`` times the real message objects).
"""

from __future__ import annotations

import numpy as np


def message_payload(
    uv_pressure_kpa: np.ndarray,
    uv_mask: np.ndarray,
    vertex_pressure_kpa: np.ndarray,
    vertex_contact: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    vmax_kpa: float = 50.0,
) -> dict[str, bytes]:
    """The byte payloads the pressure node's messages carry, built with numpy only.

    UVPressure's 32FC1 map, the colourised UV image, the contact PointCloud2 (x, y, z, pressure,
    contact) and the mesh Marker's triangle corners and per-corner colours. What this leaves out
    is the rclpy message objects themselves (e.g. one ``geometry_msgs/Point`` per triangle corner
    in the Marker), which the library cannot import.

    Args:
        uv_pressure_kpa: (Hu, Wu) kPa; uv_mask: (Hu, Wu) bool.
        vertex_pressure_kpa: (V,) kPa; vertex_contact: (V,) bool; vertices: (V, 3) metres.
        faces: (F, 3) vertex indices.
    """
    from egopress_core.image_encodings import encode_image
    from egopress_core.messages import marker_geometry
    from egopress_core.point_clouds import contact_points, pack_points
    from egopress_core.visualize import colorize

    # The numpy halves of egopress_core.messages' builders, which the node runs before rclpy.
    uv_pressure_kpa = np.asarray(uv_pressure_kpa, dtype=np.float32)
    uv_map = encode_image(uv_pressure_kpa, "32FC1").data.tobytes()
    uv_colours = colorize(uv_pressure_kpa, vmax_kpa, mask=np.asarray(uv_mask, dtype=bool))
    uv_image = encode_image(uv_colours, "rgb8").data.tobytes()
    cloud = pack_points(contact_points(vertices, vertex_pressure_kpa, vertex_contact))
    marker_points, marker_colours = marker_geometry(vertices, faces, colorize(vertex_pressure_kpa, vmax_kpa))
    return {"uv_map": uv_map, "uv_image": uv_image, "point_cloud": cloud.data,
            "marker_points": marker_points.tobytes(), "marker_colours": marker_colours.tobytes()}
