"""Reading, validating and writing MANO-format model pickles, without chumpy.

The official MANO pickles (``MANO_RIGHT.pkl``, ``MANO_LEFT.pkl``) are Python 2 pickles in which
some arrays (``shapedirs`` among them) are ``chumpy.ch.Ch`` objects. Unpickling them normally
imports chumpy, which does not import on NumPy >= 1.24. :func:`load_mano_pickle` instead maps
every ``chumpy.*`` global to a stand-in that only records the object's pickled state (chumpy's
``Ch.__getstate__`` is its ``__dict__`` without the weak references; a plain ``Ch`` keeps its
value under ``'x'``), then replaces each stand-in by that array. Old ``scipy.sparse`` matrices
are rebuilt from their pickled ``data``/``indices``/``indptr`` the same way, so a pickle written
by a 2014 SciPy loads on a current one.

The unpickler is also an allow-list: a model file is data, so any global other than NumPy's and
SciPy's array reconstructors, a few builtins and chumpy's classes is refused instead of imported
(an arbitrary pickle can run code on load).

Written pickles store NumPy arrays as ``numpy.ndarray(shape, dtype, buffer)`` calls, which load
on every NumPy version (NumPy 2's own pickles name ``numpy._core``, unknown to NumPy 1.x).
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.sparse

from egopress_core.errors import DataError
from egopress_core.files import write_bytes_atomic

NUM_MANO_JOINTS = 16
NUM_POSE_FEATURES = 9 * (NUM_MANO_JOINTS - 1)  # (R - I) of the 15 finger joints, row-major
NUM_BETAS = 10

# Keys smplx's MANO loader reads (smplx.body_models.SMPL.__init__ and MANO.__init__).
REQUIRED_KEYS = (
    "v_template",
    "f",
    "J_regressor",
    "weights",
    "kintree_table",
    "shapedirs",
    "posedirs",
    "hands_components",
    "hands_mean",
)


@dataclass(frozen=True)
class ManoArrays:
    """A validated MANO-format model. V vertices, F faces, S >= 10 shape components.

    Attributes:
        v_template: (V, 3) float64 template vertices of the flat hand, metres.
        faces: (F, 3) int64 triangle vertex indices.
        j_regressor: (16, V) float64 dense joint regressor.
        weights: (V, 16) float64 skinning weights, rows sum to 1.
        parents: (16,) int64 parent joint of each joint, -1 for the root.
        shapedirs: (V, 3, S) float64 shape blend shapes.
        posedirs: (V, 3, 135) float64 pose blend shapes over (R_j - I) of joints 1..15.
        hands_components: (K, 45) float64 pose PCA basis (rows).
        hands_mean: (45,) float64 mean (relaxed) hand pose.
        raw: every key of the source pickle, converted to plain NumPy/SciPy objects.
    """

    v_template: np.ndarray
    faces: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    hands_components: np.ndarray
    hands_mean: np.ndarray
    raw: dict

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])


# ---------------------------------------------------------------------------------------------
# Reading


class _ChumpyStandIn:
    """Takes the place of a chumpy class while unpickling; keeps the pickled state only."""

    chumpy_path = "chumpy"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


class _SparseStandIn:
    """Takes the place of a scipy.sparse matrix class; rebuilt by :func:`_rebuild_sparse`."""

    sparse_format = "csc"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        self.state = state


_NUMPY_GLOBALS = {
    "_reconstruct",
    "scalar",
    "ndarray",
    "dtype",
    "_frombuffer",
    "matrix",
}
_BUILTIN_GLOBALS = {"object", "set", "frozenset", "slice", "complex", "bytearray", "list", "dict", "tuple"}
_SPARSE_FORMATS = {"csc", "csr", "coo"}


class _ModelUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._chumpy_classes: dict[str, type] = {}
        self.saw_chumpy = False

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            self.saw_chumpy = True
            path = f"{module}.{name}"
            if path not in self._chumpy_classes:
                self._chumpy_classes[path] = type(name, (_ChumpyStandIn,), {"chumpy_path": path})
            return self._chumpy_classes[path]
        if module.startswith("scipy.sparse"):
            sparse_format = name.split("_")[0]
            if name.endswith(("_matrix", "_array")) and sparse_format in _SPARSE_FORMATS:
                return type(name, (_SparseStandIn,), {"sparse_format": sparse_format})
        if module == "numpy" or module.startswith("numpy.core") or module.startswith("numpy._core"):
            if name in _NUMPY_GLOBALS:
                return _numpy_global(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return _numpy_global(module, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            import copyreg

            return copyreg._reconstructor
        if module in ("__builtin__", "builtins") and name in _BUILTIN_GLOBALS:
            import builtins

            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise DataError(
            f"{self._source}: refusing to load the global '{module}.{name}'; a MANO model file "
            "holds only arrays (NumPy, SciPy sparse, chumpy)"
        )


def _numpy_global(module: str, name: str):
    import importlib

    # NumPy 2 pickles name numpy._core, NumPy 1 pickles numpy.core: use whichever exists.
    candidates = [module]
    if module.startswith("numpy._core"):
        candidates.append("numpy.core" + module[len("numpy._core") :])
    elif module.startswith("numpy.core"):
        candidates.insert(0, "numpy._core" + module[len("numpy.core") :])
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise DataError(f"this NumPy has no '{module}.{name}' to rebuild the pickled arrays with")


def _rebuild_sparse(obj: _SparseStandIn, where: str) -> scipy.sparse.spmatrix:
    state = obj.state if isinstance(getattr(obj, "state", None), dict) else {}
    shape = state.get("_shape", state.get("shape"))
    try:
        if obj.sparse_format in ("csc", "csr"):
            cls = scipy.sparse.csc_matrix if obj.sparse_format == "csc" else scipy.sparse.csr_matrix
            return cls(
                (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"])),
                shape=tuple(int(s) for s in shape),
            )
        coords = state.get("coords")
        row, col = (coords if coords is not None else (state["row"], state["col"]))
        return scipy.sparse.coo_matrix(
            (np.asarray(state["data"]), (np.asarray(row), np.asarray(col))),
            shape=tuple(int(s) for s in shape),
        ).tocsc()
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{where}: cannot rebuild the pickled sparse matrix ({error})") from None


def _plain(value: Any, where: str) -> Any:
    """Replaces chumpy and sparse stand-ins, recursively, by NumPy / SciPy objects."""
    if isinstance(value, _ChumpyStandIn):
        state = getattr(value, "state", None)
        if not isinstance(state, dict) or "x" not in state:
            raise DataError(
                f"{where} is a chumpy '{value.chumpy_path}' expression, not a stored array; "
                "only plain chumpy.Ch values can be converted without chumpy"
            )
        return np.array(_plain(state["x"], where), dtype=np.float64)
    if isinstance(value, _SparseStandIn):
        return _rebuild_sparse(value, where)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([_plain(item, where) for item in value.ravel()]).reshape(value.shape)
    if isinstance(value, dict):
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item, where) for item in value)
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return value.copy()
    return value


def load_mano_pickle(path: str | os.PathLike) -> tuple[dict, bool]:
    """Reads a MANO-format pickle (plain or chumpy-based) into plain Python/NumPy objects.

    Returns:
        (data, was_chumpy): the pickled dict with chumpy arrays replaced by float64 ndarrays
        and sparse matrices rebuilt for this SciPy; whether the file referenced chumpy.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MANO model file not found: {path}")
    try:
        with open(path, "rb") as handle:
            unpickler = _ModelUnpickler(handle, path)
            data = unpickler.load()
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"{path}: not a readable MANO model pickle ({type(error).__name__}: {error})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a MANO model pickle holds a dict, got {type(data).__name__}")
    data = {str(key): _plain(value, f"{path}: key '{key}'") for key, value in data.items()}
    return data, unpickler.saw_chumpy


# ---------------------------------------------------------------------------------------------
# Validation


def _as_float(data: Mapping, key: str, path: Path) -> np.ndarray:
    value = data[key]
    if scipy.sparse.issparse(value):
        value = value.toarray()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: '{key}' is not a numeric array (got {type(value).__name__})") from None
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: '{key}' contains NaN or infinite values")
    return array


def _expect_shape(array: np.ndarray, expected: tuple, key: str, path: Path, meaning: str) -> None:
    ok = array.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, array.shape))
    if not ok:
        shown = tuple("*" if e is None else e for e in expected)
        raise DataError(f"{path}: '{key}' has shape {array.shape}, expected {shown} ({meaning})")


def validate_mano_data(data: Mapping, path: str | os.PathLike) -> ManoArrays:
    """Checks every key smplx's MANO loader reads; raises DataError naming the key and file."""
    path = Path(path)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise DataError(
            f"{path}: MANO model is missing key '{missing[0]}'"
            + (f" (and {missing[1:]})" if len(missing) > 1 else "")
            + f"; keys present: {sorted(data)}"
        )
    v_template = _as_float(data, "v_template", path)
    _expect_shape(v_template, (None, 3), "v_template", path, "V vertices x xyz")
    num_vertices = v_template.shape[0]
    if num_vertices < 4:
        raise DataError(f"{path}: 'v_template' has {num_vertices} vertices; a hand mesh needs many more")

    faces_raw = np.asarray(data["f"])
    if faces_raw.ndim != 2 or faces_raw.shape[1] != 3 or not np.issubdtype(faces_raw.dtype, np.integer):
        raise DataError(f"{path}: 'f' must be an (F, 3) integer array, got {faces_raw.dtype} {faces_raw.shape}")
    faces = faces_raw.astype(np.int64)
    if faces.size == 0 or faces.min() < 0 or faces.max() >= num_vertices:
        raise DataError(f"{path}: 'f' indexes vertices outside [0, {num_vertices})")

    j_regressor = _as_float(data, "J_regressor", path)
    _expect_shape(j_regressor, (NUM_MANO_JOINTS, num_vertices), "J_regressor", path, "16 joints x V")
    weights = _as_float(data, "weights", path)
    _expect_shape(weights, (num_vertices, NUM_MANO_JOINTS), "weights", path, "V x 16 joints")
    if weights.min() < -1e-6 or np.abs(weights.sum(axis=1) - 1.0).max() > 1e-3:
        raise DataError(f"{path}: 'weights' rows must be non-negative and sum to 1")

    kintree = np.asarray(data["kintree_table"])
    if kintree.shape != (2, NUM_MANO_JOINTS):
        raise DataError(f"{path}: 'kintree_table' has shape {kintree.shape}, expected (2, 16)")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1
    for joint in range(1, NUM_MANO_JOINTS):
        if not 0 <= parents[joint] < joint:
            raise DataError(
                f"{path}: 'kintree_table' gives joint {joint} the parent {kintree[0][joint]}; "
                "parents must precede their children"
            )

    shapedirs = _as_float(data, "shapedirs", path)
    _expect_shape(shapedirs, (num_vertices, 3, None), "shapedirs", path, "V x 3 x shape components")
    if shapedirs.shape[2] < NUM_BETAS:
        raise DataError(f"{path}: 'shapedirs' has {shapedirs.shape[2]} shape components, at least 10 needed")
    posedirs = _as_float(data, "posedirs", path)
    _expect_shape(posedirs, (num_vertices, 3, NUM_POSE_FEATURES), "posedirs", path, "V x 3 x 135")
    hands_components = _as_float(data, "hands_components", path)
    _expect_shape(hands_components, (None, 45), "hands_components", path, "PCA components x 45")
    hands_mean = _as_float(data, "hands_mean", path).reshape(-1)
    _expect_shape(hands_mean, (45,), "hands_mean", path, "15 joints x axis-angle")
    return ManoArrays(
        v_template=v_template,
        faces=faces,
        j_regressor=j_regressor,
        weights=weights,
        parents=parents,
        shapedirs=shapedirs,
        posedirs=posedirs,
        hands_components=hands_components,
        hands_mean=hands_mean,
        raw=dict(data),
    )


def load_mano_model(path: str | os.PathLike) -> ManoArrays:
    """:func:`load_mano_pickle` followed by :func:`validate_mano_data`."""
    data, _ = load_mano_pickle(path)
    return validate_mano_data(data, path)


# ---------------------------------------------------------------------------------------------
# Writing


class _PortablePickler(pickle.Pickler):
    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            if obj.dtype.hasobject:
                raise DataError("MANO model arrays must be numeric, found an object array")
            # numpy.ndarray(shape, dtype, buffer): the same global on every NumPy version.
            return np.ndarray, (obj.shape, obj.dtype.str, np.ascontiguousarray(obj).tobytes())
        return NotImplemented


def dumps_mano(data: Mapping[str, Any]) -> bytes:
    """Serialises a dict of arrays / sparse matrices / strings as a MANO-format pickle."""
    buffer = io.BytesIO()
    _PortablePickler(buffer, protocol=4).dump(dict(data))
    return buffer.getvalue()


def write_mano_pickle(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Writes a plain (chumpy-free) MANO-format pickle atomically."""
    write_bytes_atomic(path, dumps_mano(data))


def convert_mano_pickle(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    right_reference: str | os.PathLike | None = None,
) -> dict:
    """Converts an official (chumpy-based) MANO pickle into a plain NumPy/SciPy pickle.

    Every key is kept (sparse matrices stay sparse, as manopth expects), chumpy arrays become
    float64 ndarrays, and the result is validated as a MANO model before it is written.

    Args:
        source: the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (or an already plain one).
        destination: output path (written atomically).
        right_reference: for a left model, the right model of the same release. The official
            left model's ``shapedirs`` carry the right hand's x components unmirrored
            (vchoutas/smplx#48); when they equal the reference's, they are negated.

    Returns:
        A summary dict: ``was_chumpy``, ``num_vertices``, ``keys``, ``fixed_left_shapedirs``.
    """
    source, destination = Path(source), Path(destination)
    if source.resolve() == destination.resolve():
        raise DataError(f"convert-mano: the output {destination} would overwrite the input")
    data, was_chumpy = load_mano_pickle(source)
    model = validate_mano_data(data, source)
    fixed = False
    if right_reference is not None:
        reference = load_mano_model(right_reference)
        if reference.shapedirs.shape != model.shapedirs.shape:
            raise DataError(
                f"{right_reference}: 'shapedirs' shape {reference.shapedirs.shape} differs from "
                f"{source}'s {model.shapedirs.shape}; not the same MANO release"
            )
        if np.abs(model.shapedirs[:, 0, :] - reference.shapedirs[:, 0, :]).sum() < 1.0:
            shapedirs = np.array(model.shapedirs)
            shapedirs[:, 0, :] *= -1.0
            data["shapedirs"] = shapedirs
            fixed = True
    write_mano_pickle(destination, data)
    # Read back through the same path the hand model uses, so a bad write cannot go unnoticed.
    load_mano_model(destination)
    return {
        "was_chumpy": was_chumpy,
        "num_vertices": model.num_vertices,
        "keys": sorted(data),
        "fixed_left_shapedirs": fixed,
    }
