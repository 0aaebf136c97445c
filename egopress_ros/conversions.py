"""The rclpy side of :mod:`egopress_core.messages`: a message factory over rclpy's generated classes.

The builders and readers of every message the nodes publish and read are in
:mod:`egopress_core.messages`, shared with the rosbag tools; they take :data:`RCLPY` here, e.g.
``messages.uv_pressure(RCLPY, ...)``. What is rclpy-specific is how a field is stored:

- fixed-size numeric arrays (``float32[3] global_orient``, ``float64[9] k``) are numpy arrays of
  exactly the element type;
- numeric sequences (``float32[] vertex_pressure_kpa``, ``uint8[] data``) are ``array.array``
  (filled from the numpy buffer in one copy: a list of Python numbers, which the generated setters
  otherwise accept, costs a Python object per element and a per-element check);
- ``bool[]`` sequences and message sequences are lists.

:class:`RclpyFactory` reads that from each class's ``SLOT_TYPES``, so builders pass numpy arrays
whatever the library.
"""

from __future__ import annotations

import array
import importlib
from typing import Any, Callable

import numpy as np

from egopress_core.messages import MessageFactory

# rosidl basic type -> (numpy dtype, array.array type code) of numeric array fields.
_NUMERIC_TYPES = {
    "float": (np.float32, "f"), "double": (np.float64, "d"),
    "int8": (np.int8, "b"), "uint8": (np.uint8, "B"), "int16": (np.int16, "h"), "uint16": (np.uint16, "H"),
    "int32": (np.int32, "i"), "uint32": (np.uint32, "I"), "int64": (np.int64, "q"), "uint64": (np.uint64, "Q"),
}  # fmt: skip


def message_class(typename: str) -> type:
    """rclpy's generated class of a ROS type name: ``"sensor_msgs/msg/Image"`` ->
    ``sensor_msgs.msg.Image`` (``egopress_ros/msg/...`` needs the built messages on the path).

    Raises:
        ImportError: the interface package is not installed or not built.
    """
    package, _, name = typename.partition("/msg/")
    if not name:
        raise ValueError(f"{typename!r} is not a ROS message type name (<package>/msg/<Name>)")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _field_converter(slot_type) -> Callable[[Any], Any] | None:
    """How a numpy value becomes what rclpy stores in a field of ``slot_type``; None for fields
    that take the value as it is (scalars, strings, single messages)."""
    from rosidl_parser.definition import AbstractSequence, Array, BasicType

    if not isinstance(slot_type, (Array, AbstractSequence)):
        return None
    element = slot_type.value_type
    if not isinstance(element, BasicType):
        return list  # messages or strings
    if element.typename == "boolean":
        return lambda value: np.asarray(value, dtype=bool).reshape(-1).tolist()
    if element.typename not in _NUMERIC_TYPES:
        return None  # char / octet / long double: none in the package's messages
    dtype, code = _NUMERIC_TYPES[element.typename]
    if isinstance(slot_type, Array):
        # A copy: the message must not change when the caller's array does.
        return lambda value: np.array(value, dtype=dtype).reshape(-1)

    def to_array(value) -> array.array:
        result = array.array(code)
        if isinstance(value, (bytes, bytearray, memoryview)):
            result.frombytes(value)
        else:
            result.frombytes(memoryview(np.ascontiguousarray(value, dtype=dtype).reshape(-1)).cast("B"))
        return result

    return to_array


class RclpyFactory(MessageFactory):
    """rclpy's generated message classes, imported by type name."""

    def _make_constructor(self, typename: str) -> Callable[..., Any]:
        from rosidl_parser.definition import AbstractSequence, BasicType

        cls = message_class(typename)
        converters, assigned_after = {}, set()
        for name, slot_type in zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES):
            convert = _field_converter(slot_type)
            if convert is not None:
                converters[name] = convert
                element = getattr(slot_type, "value_type", None)
                if (isinstance(slot_type, AbstractSequence) and isinstance(element, BasicType)
                        and element.typename in _NUMERIC_TYPES):
                    # The generated __init__ copies a numeric sequence into a new array.array; the
                    # setter keeps an array.array as it is, which saves a copy of every image.
                    assigned_after.add(name)
        if not converters:
            return cls  # scalar-only messages (Point, Time, ...): the class itself, no overhead

        def construct(**fields: Any):
            later = {}
            for name, convert in converters.items():
                if name in fields:
                    value = convert(fields.pop(name) if name in assigned_after else fields[name])
                    if name in assigned_after:
                        later[name] = value
                    else:
                        fields[name] = value
            msg = cls(**fields)
            for name, value in later.items():
                setattr(msg, name, value)
            return msg

        return construct


RCLPY = RclpyFactory()
