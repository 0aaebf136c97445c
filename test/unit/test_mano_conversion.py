"""Official-style (chumpy-based) MANO pickles: read and converted without chumpy."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import pickletools
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from egopress_core.cli.main import main
from egopress_core.errors import DataError
from egopress_core.hand.bundled_hand import mirror_pose_vectors
from egopress_core.hand.hand_model import BUNDLED_HAND_DIR, BUNDLED_MODEL_FILES, HandModel
from egopress_core.hand.mano_io import convert_mano_pickle, load_mano_pickle

FAKE_MODULES = ("chumpy", "chumpy.ch", "chumpy.reordering")


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def fake_chumpy():
    """Temporary ``chumpy.ch.Ch`` / ``chumpy.reordering.Select`` classes that pickle their state
    the way chumpy does (``__dict__`` without the weak-reference bookkeeping); removed from
    ``sys.modules`` before the test converts anything."""
    assert not any(name in sys.modules for name in FAKE_MODULES)
    package = types.ModuleType("chumpy")
    ch_module = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False
            self._parents = {}
            self._cache = {"r": None, "drs": {}}

        def __getstate__(self):
            state = dict(self.__dict__)
            del state["_parents"], state["_cache"]
            return state

    class Select(Ch):
        def __init__(self, a, idxs):
            super().__init__(0.0)
            del self.x
            self.a, self.idxs = a, np.asarray(idxs)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch_module.Ch, reordering.Select = Ch, Select
    package.ch, package.reordering = ch_module, reordering
    sys.modules.update({"chumpy": package, "chumpy.ch": ch_module, "chumpy.reordering": reordering})
    try:
        yield types.SimpleNamespace(Ch=Ch, Select=Select)
    finally:
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)


def bundled(side: str) -> dict:
    data, _ = load_mano_pickle(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side])
    return data


def official_like(data: dict, Ch) -> dict:
    """The layout of the official release: chumpy arrays, a sparse regressor, uint32 faces."""
    official = dict(data)
    for key in ("shapedirs", "posedirs", "v_template", "weights"):
        official[key] = Ch(data[key])
    official["J"] = Ch(np.asarray(data["J_regressor"]) @ np.asarray(data["v_template"]))
    official["J_regressor"] = scipy.sparse.csc_matrix(np.asarray(data["J_regressor"]))
    official["hands_coeffs"] = np.random.default_rng(0).normal(size=(20, 45))
    return official


def write_python2_style_pickle(path: Path, data: dict) -> None:
    """Protocol 2 with the module names of a 2014-era NumPy/SciPy (GLOBAL opcodes are text)."""
    payload = pickle.dumps(data, protocol=2)
    payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    payload = payload.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
    path.write_bytes(payload)


def pickle_globals(path: Path) -> set[str]:
    names, strings = set(), []
    for opcode, argument, _ in pickletools.genops(path.read_bytes()):
        if opcode.name == "GLOBAL":
            names.add(argument.replace(" ", "."))
        elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.add(f"{strings[-2]}.{strings[-1]}")
    return names


def with_sidecar(model_path: Path, side: str) -> Path:
    """Copies the bundled sidecar and UV OBJ next to ``model_path`` (its topology is not MANO's)."""
    source = BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side]
    sidecar = json.loads(source.with_suffix(".json").read_text())
    shutil.copy(BUNDLED_HAND_DIR / sidecar["uv_obj"], model_path.parent / sidecar["uv_obj"])
    model_path.with_suffix(".json").write_text(json.dumps(sidecar))
    return model_path


def forward(hand: HandModel, seed: int = 0, side: str = "right"):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(2, n, generator=g) * s for n, s in ((3, 0.5), (45, 0.4), (10, 1.0), (3, 0.1))]
    if side == "left":
        params[0] = params[0] * torch.tensor([1.0, -1.0, -1.0])
        params[1] = torch.from_numpy(mirror_pose_vectors(params[1].numpy()))
        params[3] = params[3] * torch.tensor([-1.0, 1.0, 1.0])
    return hand(*params)


def test_chumpy_pickle_converts_without_chumpy(tmp_path, fake_chumpy):
    source = tmp_path / "MANO_RIGHT.pkl"
    write_python2_style_pickle(source, official_like(bundled("right"), fake_chumpy.Ch))
    for name in FAKE_MODULES:
        sys.modules.pop(name)
    assert importlib.util.find_spec("chumpy") is None, "a real chumpy would make this test meaningless"
    assert {"chumpy.ch.Ch", "numpy.core.multiarray._reconstruct", "scipy.sparse.csc.csc_matrix"} <= pickle_globals(source)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(source.read_bytes(), encoding="latin1")  # what smplx would do

    target = tmp_path / "converted" / "MANO_RIGHT.pkl"
    assert main(["convert-mano", str(source), str(target)]) == 0

    # A plain pickle: no chumpy, loads with pickle alone, every key kept, sparse stays sparse.
    assert not any("chumpy" in name for name in pickle_globals(target))
    with open(target, "rb") as handle:
        converted = pickle.load(handle)
    reference = bundled("right")
    assert set(converted) == set(reference) | {"J", "hands_coeffs"}
    assert scipy.sparse.issparse(converted["J_regressor"])
    for key in ("shapedirs", "posedirs", "v_template", "weights"):
        assert type(converted[key]) is np.ndarray
        np.testing.assert_array_equal(converted[key], np.asarray(reference[key], dtype=np.float64), err_msg=key)
    np.testing.assert_array_equal(converted["J_regressor"].toarray(), reference["J_regressor"])

    # The converted file drives the same hand through HandModel (and so through smplx).
    converted_hand = HandModel(with_sidecar(target, "right"), "right")
    bundled_hand = HandModel(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"], "right")
    torch.testing.assert_close(forward(converted_hand).vertices, forward(bundled_hand).vertices)
    torch.testing.assert_close(forward(converted_hand).joints, forward(bundled_hand).joints)


def test_hand_model_reads_the_chumpy_pickle_directly(tmp_path, fake_chumpy):
    source = tmp_path / "MANO_RIGHT.pkl"
    write_python2_style_pickle(source, official_like(bundled("right"), fake_chumpy.Ch))
    for name in FAKE_MODULES:
        sys.modules.pop(name)
    hand = HandModel(with_sidecar(source, "right"), "right")
    reference = HandModel(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"], "right")
    torch.testing.assert_close(forward(hand).vertices, forward(reference).vertices)


def test_chumpy_expression_is_reported_by_key(tmp_path, fake_chumpy):
    data = official_like(bundled("right"), fake_chumpy.Ch)
    data["hands_mean"] = fake_chumpy.Select(fake_chumpy.Ch(np.zeros(90)), np.arange(45))
    source = tmp_path / "MANO_RIGHT.pkl"
    write_python2_style_pickle(source, data)
    for name in FAKE_MODULES:
        sys.modules.pop(name)
    with pytest.raises(DataError, match=r"key 'hands_mean' is a chumpy 'chumpy.reordering.Select' expression"):
        convert_mano_pickle(source, tmp_path / "out.pkl")
    assert not (tmp_path / "out.pkl").exists()


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_arbitrary_globals_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    source = tmp_path / "MANO_RIGHT.pkl"
    data = bundled("right")
    data["bs_style"] = _RunsCode(marker)
    source.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DataError, match=r"refusing to load the global '(posix|os|nt)\.system'"):
        HandModel(source, "right")
    assert not marker.exists()


def test_left_shapedirs_defect_is_fixed_with_a_right_reference(tmp_path, fake_chumpy):
    right = bundled("right")
    left = bundled("left")
    defective = dict(left, shapedirs=right["shapedirs"])  # the official left model's defect
    source = tmp_path / "MANO_LEFT.pkl"
    reference = tmp_path / "MANO_RIGHT.pkl"
    write_python2_style_pickle(source, official_like(defective, fake_chumpy.Ch))
    write_python2_style_pickle(reference, official_like(right, fake_chumpy.Ch))
    for name in FAKE_MODULES:
        sys.modules.pop(name)

    unfixed = tmp_path / "plain" / "MANO_LEFT.pkl"
    fixed = tmp_path / "fixed" / "MANO_LEFT.pkl"
    assert main(["convert-mano", str(source), str(unfixed)]) == 0
    assert main(["convert-mano", str(source), str(fixed), "--right-reference", str(reference)]) == 0
    np.testing.assert_array_equal(load_mano_pickle(fixed)[0]["shapedirs"], left["shapedirs"])

    right_out = forward(HandModel(BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES["right"], "right"))
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    fixed_out = forward(HandModel(with_sidecar(fixed, "left"), "left"), side="left")
    unfixed_out = forward(HandModel(with_sidecar(unfixed, "left"), "left"), side="left")
    torch.testing.assert_close(fixed_out.vertices, right_out.vertices * mirror, atol=2e-6, rtol=0)
    assert (unfixed_out.vertices - right_out.vertices * mirror).abs().max() > 1e-3


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["convert-mano", str(tmp_path / "missing.pkl"), str(tmp_path / "out.pkl")]) == 2
    assert "MANO model file not found" in capsys.readouterr().err
    not_a_pickle = tmp_path / "MANO_RIGHT.pkl"
    not_a_pickle.write_text("hello")
    assert main(["convert-mano", str(not_a_pickle), str(tmp_path / "out.pkl")]) == 2
    assert "not a readable MANO model pickle" in capsys.readouterr().err
    assert main(["convert-mano", str(not_a_pickle), str(not_a_pickle)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
