"""MANO-format hand model: forward kinematics through ``smplx.MANO``, batched in torch.

Any MANO-format pickle works: the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` (chumpy-based
or converted with ``egopress convert-mano``) and the hand bundled with this package
(``egopress_core/assets/hand``). Both go through the same path: the pickle is read and checked
by :mod:`egopress_core.hand.mano_io`, then handed to ``smplx.MANO`` as its data struct.

Model-specific facts live next to the pickle, in a sidecar JSON with the same stem
(``MANO_RIGHT.json`` next to ``MANO_RIGHT.pkl``; ``docs/hand_model.md``, "Sidecar JSON")::

    {"hand_model": "egopress_hand_v1", "side": "right",
     "tip_vertex_ids": {"thumb": 1185, "index": 617, "middle": 758, "ring": 899, "little": 1040},
     "uv_obj": "EGOPRESS_HAND_UV_RIGHT.obj", "uv_layout": "egopress_hand_v1_uv"}

(``side`` is optional; without it the file name's RIGHT / LEFT, if any, is checked.)

Without a sidecar the pickle must be official MANO (778 vertices): its fingertip vertex ids are
smplx's (``smplx.vertex_ids.vertex_ids['mano']``), and the UV atlas comes from the config
(``MANO_UV_right.obj``) if any.

Joint output: MANO regresses 16 joints (wrist; index, middle, little, ring, thumb, each
proximal to distal). :class:`HandModel` appends the five fingertip vertices and returns the 21
joints in OpenPose hand order (wrist; thumb CMC/MCP/IP/tip; index MCP/PIP/DIP/tip; middle;
ring; little), as ``msg/HandMesh.msg`` documents.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egopress_core.errors import ConfigError, DataError
from egopress_core.hand.mano_io import NUM_BETAS, ManoArrays, load_mano_model
from egopress_core.hand.skeleton import FINGERS

SIDES = ("right", "left")
# smplx names the little finger "pinky" in its vertex id table.
_SMPLX_TIP_NAMES = {"thumb": "thumb", "index": "index", "middle": "middle", "ring": "ring", "little": "pinky"}

MANO_JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "little1", "little2", "little3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)  # fmt: skip
OPENPOSE_JOINT_NAMES = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)  # fmt: skip
# Rows of [16 MANO joints, 5 tips (thumb, index, middle, ring, little)] in OpenPose order.
OPENPOSE_FROM_MANO_AND_TIPS = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)

BUNDLED_HAND_DIR = Path(__file__).resolve().parent.parent / "assets" / "hand"
BUNDLED_MODEL_FILES = {"right": "MANO_EGOPRESS_HAND_RIGHT.pkl", "left": "MANO_EGOPRESS_HAND_LEFT.pkl"}
OFFICIAL_MANO_NUM_VERTICES = 778


@dataclass(frozen=True)
class HandOutput:
    """Posed hand. B = batch, V = vertices of the model's topology.

    Attributes:
        vertices: (B, V, 3) posed vertices, metres.
        joints: (B, 21, 3) joints in OpenPose hand order, metres.
    """

    vertices: torch.Tensor
    joints: torch.Tensor


@dataclass(frozen=True)
class HandModelConfig:
    """Which hand model to load.

    Attributes:
        model_path: MANO-format ``.pkl`` (or a folder holding ``MANO_RIGHT.pkl`` /
            ``MANO_LEFT.pkl``); None selects the bundled hand of ``side``.
        uv_obj_path: OBJ with ``v``/``vt``/``f v/vt`` lines giving the UV atlas (e.g.
            ``MANO_UV_right.obj``); None takes the sidecar's ``uv_obj`` if there is one.
        side: "right" or "left".
        flat_hand_mean: True: ``hand_pose`` is relative to the flat hand (zero = flat).
            False: relative to the model's mean relaxed pose ``hands_mean`` (MANO default).
    """

    model_path: str | None = None
    uv_obj_path: str | None = None
    side: str = "right"
    flat_hand_mean: bool = True

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ConfigError(f"hand side must be one of {SIDES}. Got {self.side!r}")
        if self.model_path is not None:
            if not isinstance(self.model_path, (str, os.PathLike)) or not str(self.model_path):
                raise ConfigError(f"model_path must be a path to a MANO-format .pkl. Got {self.model_path!r}")
            path = Path(self.model_path)
            if path.suffix and path.suffix.lower() != ".pkl":
                raise ConfigError(f"model_path must be a .pkl file or a folder. Got {self.model_path!r}")
        if self.uv_obj_path is not None:
            is_path = isinstance(self.uv_obj_path, (str, os.PathLike))
            if not is_path or Path(self.uv_obj_path).suffix.lower() != ".obj":
                raise ConfigError(f"uv_obj_path must be a path to an .obj file. Got {self.uv_obj_path!r}")
        if not isinstance(self.flat_hand_mean, bool):
            raise ConfigError(f"flat_hand_mean must be a bool. Got {self.flat_hand_mean!r}")

    def build(self) -> "HandModel":
        return HandModel(
            resolve_model_path(self.model_path, self.side),
            side=self.side,
            uv_obj_path=self.uv_obj_path,
            flat_hand_mean=self.flat_hand_mean,
        )


def resolve_model_path(model_path: str | os.PathLike | None, side: str) -> Path:
    """The pickle a config names: the bundled one, the file itself, or MANO_<SIDE>.pkl in a folder."""
    if side not in SIDES:
        raise ConfigError(f"hand side must be one of {SIDES}. Got {side!r}")
    if model_path is None:
        return BUNDLED_HAND_DIR / BUNDLED_MODEL_FILES[side]
    path = Path(model_path)
    if path.is_dir():
        candidate = path / f"MANO_{side.upper()}.pkl"
        if not candidate.is_file():
            raise DataError(f"hand model folder {path} has no MANO_{side.upper()}.pkl")
        return candidate
    return path


def load_hand_model(
    side: str = "right",
    model_path: str | os.PathLike | None = None,
    uv_obj_path: str | os.PathLike | None = None,
    flat_hand_mean: bool = True,
) -> "HandModel":
    """The hand model of a config; with no ``model_path``, the bundled hand of ``side``."""
    return HandModelConfig(
        model_path=None if model_path is None else str(model_path),
        uv_obj_path=None if uv_obj_path is None else str(uv_obj_path),
        side=side,
        flat_hand_mean=flat_hand_mean,
    ).build()


def read_sidecar(model_path: Path) -> dict[str, Any] | None:
    """The JSON next to a model pickle (same stem), or None if there is none."""
    sidecar = model_path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        content = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{sidecar}: unreadable hand model sidecar ({error})") from None
    if not isinstance(content, dict):
        raise DataError(f"{sidecar}: a hand model sidecar is a JSON object")
    return content


def faces_topology_id(name: str, num_vertices: int, faces: np.ndarray) -> str:
    """``"<name>:<V>v:<sha1 of faces, 12 hex>"``; faces hashed as C-contiguous int64 little-endian."""
    digest = hashlib.sha1(np.ascontiguousarray(faces, dtype="<i8").tobytes()).hexdigest()[:12]
    return f"{name}:{num_vertices}v:{digest}"


def read_obj_topology(path: Path) -> tuple[int, np.ndarray]:
    """(number of ``v`` lines, (F, 3) int64 0-based vertex indices of the ``f`` lines) of an OBJ."""
    num_vertices = 0
    faces: list[list[int]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("v "):
                    num_vertices += 1
                elif line.startswith("f "):
                    corners = [int(token.split("/")[0]) for token in line.split()[1:]]
                    if len(corners) != 3:
                        raise DataError(f"{path}: only triangle faces are supported, got {line.strip()!r}")
                    faces.append([c - 1 if c > 0 else num_vertices + c for c in corners])
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable OBJ ({error})") from None
    return num_vertices, np.asarray(faces, dtype=np.int64).reshape(-1, 3)


class HandModel(torch.nn.Module):
    """Forward kinematics of a MANO-format hand (any vertex count), via ``smplx.MANO``.

    Args:
        model_path: MANO-format ``.pkl`` (official chumpy pickles are read without chumpy).
        side: "right" or "left"; must agree with the sidecar or the file name if they say.
        uv_obj_path: UV atlas OBJ; None takes the sidecar's ``uv_obj`` (if any).
        flat_hand_mean: see :class:`HandModelConfig`.
        dtype: floating dtype of the model's buffers.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        side: str = "right",
        uv_obj_path: str | os.PathLike | None = None,
        flat_hand_mean: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if side not in SIDES:
            raise ConfigError(f"hand side must be one of {SIDES}. Got {side!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"dtype must be torch.float32 or torch.float64. Got {dtype}")
        model_path = Path(model_path)
        arrays = load_mano_model(model_path)
        sidecar = read_sidecar(model_path) or {}
        self._check_side(model_path, side, sidecar)

        self._side = side
        self._model_path = model_path
        self._template = arrays.v_template
        self._hands_mean = arrays.hands_mean.copy()
        self._hands_components = arrays.hands_components.copy()
        self._faces = arrays.faces.copy()
        self._name, tip_ids = self._model_identity(model_path, arrays, sidecar)
        self._tip_vertex_ids = tip_ids
        self._uv_obj_path = self._resolve_uv_obj(model_path, uv_obj_path, sidecar)
        self._uv_layout_name = str(
            sidecar.get("uv_layout") or (self._uv_obj_path.stem if self._uv_obj_path is not None else "")
        )
        if self._uv_obj_path is not None:
            self._check_uv_obj(self._uv_obj_path, model_path)
        self._topology_id = faces_topology_id(self._name, arrays.num_vertices, self._faces)

        self.mano = self._build_smplx(model_path, arrays, side, flat_hand_mean, dtype)
        self.register_buffer("tip_index", torch.tensor([tip_ids[f] for f in FINGERS], dtype=torch.long))
        self.register_buffer(
            "joint_order", torch.tensor(OPENPOSE_FROM_MANO_AND_TIPS, dtype=torch.long), persistent=False
        )

    # -- construction helpers ---------------------------------------------------------------

    @staticmethod
    def _check_side(model_path: Path, side: str, sidecar: dict) -> None:
        declared = sidecar.get("side")
        if declared is None:
            stem = model_path.stem.upper()
            declared = "right" if "RIGHT" in stem else "left" if "LEFT" in stem else None
        if declared is not None and declared != side:
            raise DataError(f"{model_path} is a {declared} hand model; the config asks for side={side!r}")

    @staticmethod
    def _model_identity(model_path: Path, arrays: ManoArrays, sidecar: dict) -> tuple[str, dict[str, int]]:
        num_vertices = arrays.num_vertices
        if "tip_vertex_ids" in sidecar:
            raw_tips = sidecar["tip_vertex_ids"]
            name = str(sidecar.get("hand_model") or model_path.stem.lower())
            where = f"{model_path.with_suffix('.json')}: 'tip_vertex_ids'"
            if not isinstance(raw_tips, dict) or set(raw_tips) != set(FINGERS):
                raise DataError(f"{where} must map each of {FINGERS} to a vertex id")
        else:
            if num_vertices != OFFICIAL_MANO_NUM_VERTICES:
                raise DataError(
                    f"{model_path} has {num_vertices} vertices, not official MANO's "
                    f"{OFFICIAL_MANO_NUM_VERTICES}, and no sidecar {model_path.with_suffix('.json').name} "
                    "naming its fingertip vertices ('tip_vertex_ids')"
                )
            from smplx.vertex_ids import vertex_ids as smplx_vertex_ids

            raw_tips = {finger: smplx_vertex_ids["mano"][_SMPLX_TIP_NAMES[finger]] for finger in FINGERS}
            name = str(sidecar.get("hand_model") or "mano")
            where = "smplx MANO fingertip ids"
        tips = {}
        for finger in FINGERS:
            value = raw_tips[finger]
            if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < num_vertices:
                raise DataError(f"{where}: {finger} = {value!r} is not a vertex index in [0, {num_vertices})")
            tips[finger] = int(value)
        return name, tips

    @staticmethod
    def _resolve_uv_obj(model_path: Path, uv_obj_path, sidecar: dict) -> Path | None:
        if uv_obj_path is not None:
            path = Path(uv_obj_path)
        elif sidecar.get("uv_obj"):
            path = model_path.parent / str(sidecar["uv_obj"])
        else:
            return None
        if not path.is_file():
            raise DataError(f"UV atlas OBJ not found: {path}")
        return path

    def _check_uv_obj(self, obj_path: Path, model_path: Path) -> None:
        num_obj_vertices, obj_faces = read_obj_topology(obj_path)
        if num_obj_vertices != len(self._template):
            raise DataError(
                f"UV atlas {obj_path} has {num_obj_vertices} vertices but {model_path} has "
                f"{len(self._template)}; the OBJ's vertices must be the model's, in order"
            )
        # Same triangles up to winding (one UV OBJ may serve both the right and mirrored left hand).
        if len(obj_faces) != len(self._faces) or not np.array_equal(
            np.unique(np.sort(obj_faces, axis=1), axis=0), np.unique(np.sort(self._faces, axis=1), axis=0)
        ):
            raise DataError(f"UV atlas {obj_path} has different triangles than {model_path}")

    @staticmethod
    def _build_smplx(model_path: Path, arrays: ManoArrays, side: str, flat_hand_mean: bool, dtype):
        import smplx
        from smplx.utils import Struct

        data = dict(arrays.raw)
        # smplx converts with np.array(...); hand it the validated dense float arrays.
        data.update(
            v_template=arrays.v_template,
            f=arrays.faces,
            J_regressor=arrays.j_regressor,
            weights=arrays.weights,
            shapedirs=arrays.shapedirs[:, :, :NUM_BETAS],
            posedirs=arrays.posedirs,
            hands_components=arrays.hands_components,
            hands_mean=arrays.hands_mean,
        )
        # smplx prints a warning to stdout for models with only 10 shape components; every MANO
        # model has 10, so the line is noise in a ROS node's log.
        with contextlib.redirect_stdout(io.StringIO()):
            return smplx.MANO(
                model_path=str(model_path),
                data_struct=Struct(**data),
                is_rhand=side == "right",
                use_pca=False,
                flat_hand_mean=flat_hand_mean,
                num_betas=NUM_BETAS,
                create_global_orient=False,
                create_hand_pose=False,
                create_betas=False,
                create_transl=False,
                dtype=dtype,
            )

    # -- properties -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Hand model name, e.g. ``egopress_hand_v1`` or ``mano``."""
        return self._name

    @property
    def side(self) -> str:
        return self._side

    @property
    def is_right(self) -> bool:
        return self._side == "right"

    @property
    def model_path(self) -> Path:
        return self._model_path

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 triangle vertex indices."""
        return self._faces

    @property
    def num_vertices(self) -> int:
        return int(self._template.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self._faces.shape[0])

    @property
    def topology_id(self) -> str:
        """``"<name>:<V>v:<sha1 of faces, 12 hex>"`` (msg/HandMesh.msg)."""
        return self._topology_id

    @property
    def tip_vertex_ids(self) -> dict[str, int]:
        """Fingertip vertex of each finger (thumb, index, middle, ring, little)."""
        return dict(self._tip_vertex_ids)

    @property
    def template_vertices(self) -> np.ndarray:
        """(V, 3) float64 flat-hand template, metres."""
        return self._template

    @property
    def hands_mean(self) -> np.ndarray:
        """(45,) the model's mean relaxed pose (whatever ``flat_hand_mean`` is)."""
        return self._hands_mean

    @property
    def hands_components(self) -> np.ndarray:
        """(K, 45) pose PCA basis, rows."""
        return self._hands_components

    @property
    def flat_hand_mean(self) -> bool:
        return bool(self.mano.flat_hand_mean)

    @property
    def uv_obj_path(self) -> Path | None:
        """UV atlas OBJ of this model (config, else sidecar), or None."""
        return self._uv_obj_path

    @property
    def uv_layout_name(self) -> str:
        """Name of the UV layout (sidecar ``uv_layout``, else the OBJ's stem)."""
        return self._uv_layout_name

    @property
    def parents(self) -> np.ndarray:
        """(16,) parent of each MANO joint, -1 for the wrist."""
        return self.mano.parents.cpu().numpy()

    # -- forward ----------------------------------------------------------------------------

    def _checked(self, name: str, value, width: int, batch: int | None) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            else:
                raise DataError(f"{name} must be a torch.Tensor of shape (B, {width}); got {type(value).__name__}")
        if value.ndim != 2 or value.shape[1] != width:
            raise DataError(f"{name} must have shape (B, {width}); got {tuple(value.shape)}")
        if batch is not None and value.shape[0] != batch:
            raise DataError(f"{name} has batch size {value.shape[0]} but global_orient has {batch}")
        if not torch.is_floating_point(value):
            raise DataError(f"{name} must be a floating-point tensor; got {value.dtype}")
        reference = self.mano.v_template
        return value.to(device=reference.device, dtype=reference.dtype)

    def forward(
        self,
        global_orient: torch.Tensor,
        hand_pose: torch.Tensor,
        betas: torch.Tensor,
        transl: torch.Tensor,
    ) -> HandOutput:
        """Posed vertices and joints.

        Args:
            global_orient: (B, 3) axis-angle of the wrist, radians (rotation about the rest
                wrist joint).
            hand_pose: (B, 45) axis-angle of the 15 finger joints, MANO joint order, relative to
                the flat hand (or to ``hands_mean`` if ``flat_hand_mean`` is False).
            betas: (B, 10) shape coefficients.
            transl: (B, 3) translation added to every vertex and joint, metres.

        Returns:
            :class:`HandOutput` with vertices (B, V, 3) and joints (B, 21, 3), OpenPose order.
            Inputs are cast to the model's dtype and device; gradients flow through.
        """
        global_orient = self._checked("global_orient", global_orient, 3, None)
        batch = global_orient.shape[0]
        if batch == 0:
            raise DataError("global_orient has batch size 0")
        hand_pose = self._checked("hand_pose", hand_pose, 45, batch)
        betas = self._checked("betas", betas, NUM_BETAS, batch)
        transl = self._checked("transl", transl, 3, batch)
        output = self.mano(betas=betas, global_orient=global_orient, hand_pose=hand_pose, transl=transl)
        vertices = output.vertices
        tips = vertices.index_select(1, self.tip_index)
        joints = torch.cat([output.joints, tips], dim=1).index_select(1, self.joint_order)
        return HandOutput(vertices=vertices, joints=joints)

    def rest(self, batch: int = 1) -> HandOutput:
        """The zero-parameter hand (flat if ``flat_hand_mean``), batch copies."""
        reference = self.mano.v_template
        zeros = lambda width: torch.zeros(batch, width, dtype=reference.dtype, device=reference.device)  # noqa: E731
        return self.forward(zeros(3), zeros(45), zeros(NUM_BETAS), zeros(3))

    def extra_repr(self) -> str:
        return f"name={self._name}, side={self._side}, vertices={self.num_vertices}, faces={self.num_faces}"
