"""EgoPressDiff: conditional video diffusion over UV-pressure windows (docs/egopressdiff.md).

One model per file: :class:`VertexEncoder`, :class:`PoseNet`, the image encoders,
:class:`DistributionCalibratedSpatialLayer`, :class:`EgoPressUNet` and the full
:class:`EgoPressDiff`, configured by :class:`EgoPressDiffConfig` (presets ``tiny``, ``compact``,
``paper``); and the PressureVision-style per-frame baseline :class:`PerFrameBinClassifier`
(:class:`BinClassifierConfig`, presets ``tiny`` and ``compact``) it is compared with. Around the
models: checkpoint files, formats and versions (:mod:`~egopress_core.model.checkpoint`), weight
surgery (:mod:`~egopress_core.model.surgery`), initialisation from Stable Video Diffusion
(:mod:`~egopress_core.model.svd_transfer`) and the model kinds (:mod:`~egopress_core.model.kinds`).
"""

from egopress_core.model.bin_classifier import BinClassifierConfig, PerFrameBinClassifier
from egopress_core.model.config import (
    PRESETS,
    EgoPressDiffConfig,
    compact_config,
    paper_config,
    preset_config,
    tiny_config,
)
from egopress_core.model.dc_spatial_layer import (
    DCBranches,
    DistributionCalibratedSpatialLayer,
    calibrate_channel_statistics,
)
from egopress_core.model.egopressdiff import (
    SCHEDULERS,
    EgoPressDiff,
    LossOutput,
    count_parameters,
    masked_diffusion_loss,
)
from egopress_core.model.features import FrameFeatures, WindowFeatures
from egopress_core.model.image_encoder import CLIPImageEncoder, ConvImageEncoder, ImageEncoderOutput
from egopress_core.model.latent_codec import PixelLatentCodec, VAELatentCodec
from egopress_core.model.pose_net import PoseNet, PoseNetOutput
from egopress_core.model.svd_transfer import SVDTransferReport
from egopress_core.model.unet import EgoPressUNet, svd_added_time_ids
from egopress_core.model.vertex_encoder import VertexEncoder, VertexEncoderOutput, normalize_vertices

__all__ = [
    "PRESETS",
    "SCHEDULERS",
    "BinClassifierConfig",
    "CLIPImageEncoder",
    "ConvImageEncoder",
    "DCBranches",
    "DistributionCalibratedSpatialLayer",
    "EgoPressDiff",
    "EgoPressDiffConfig",
    "EgoPressUNet",
    "FrameFeatures",
    "ImageEncoderOutput",
    "LossOutput",
    "PerFrameBinClassifier",
    "PixelLatentCodec",
    "PoseNet",
    "PoseNetOutput",
    "SVDTransferReport",
    "VAELatentCodec",
    "VertexEncoder",
    "VertexEncoderOutput",
    "WindowFeatures",
    "calibrate_channel_statistics",
    "compact_config",
    "count_parameters",
    "masked_diffusion_loss",
    "normalize_vertices",
    "paper_config",
    "preset_config",
    "svd_added_time_ids",
    "tiny_config",
]
