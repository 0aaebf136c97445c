"""Rosbag2 tools without rclpy (pure Python ``rosbags``): offline labelling of recordings
(``egopress label-bag``), the sample bag (``egopress sample-bag``) and message conversions.

- :mod:`~egopress_core.rosbag.typestore`: rosbags type store with the package's messages,
  registered from ``msg/*.msg``;
- :mod:`~egopress_core.rosbag.messages`: the rosbags message factory for the shared builders of
  :mod:`egopress_core.messages` (the live nodes use the same builders with rclpy's classes), and
  bag-only decoding (CompressedImage, depth with holes as 0);
- :mod:`~egopress_core.rosbag.reader` / :mod:`~egopress_core.rosbag.writer`: reading bags
  read-only (surviving damaged chunks) and writing bags with embedded message definitions;
- :mod:`~egopress_core.rosbag.index`: topics, synchronised frames, segments, the skip report;
- :mod:`~egopress_core.rosbag.label_options` / :mod:`~egopress_core.rosbag.label_plan` /
  :mod:`~egopress_core.rosbag.labeller`: what a labelling run is asked to do, its plan and
  report, and the run itself (resumable);
- :mod:`~egopress_core.rosbag.sample`: the synthetic sample bag;
- :mod:`~egopress_core.rosbag.topics`: the sample bag's topic names (the command-line defaults).
"""
