"""PoseNet: rendered 2D hand-skeleton maps -> features added to the U-Net after conv_in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from egopress_core.errors import ConfigError, DataError


@dataclass
class PoseNetOutput:
    """features: (N, out_channels, h, w), added to the U-Net's conv_in output."""

    features: torch.Tensor


class PoseNet(nn.Module):
    """4 x (conv 3x3, SiLU) + a zero-initialised conv 3x3 (a light alternative to ControlNet).

    The first ``num_downsamples`` convs have stride 2; if the result still differs from the
    requested output size (image and latent sizes need not be a power of two apart), features
    are area/bilinear resized before the final conv. Because the final conv starts at zero, a
    freshly added PoseNet leaves the U-Net's output unchanged and is learned from there.

    Args:
        in_channels: pose map channels (20 bone maps).
        out_channels: the U-Net's first block width.
        hidden_channels: widths of the 4 conv layers.
        num_downsamples: stride-2 convs among the 4 (0-4).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: tuple[int, int, int, int] = (16, 32, 64, 64),
        num_downsamples: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"PoseNet: {name} must be a positive integer; got {value!r}")
        if len(hidden_channels) != 4 or any(not isinstance(c, int) or c <= 0 for c in hidden_channels):
            raise ConfigError(
                f"PoseNet: hidden_channels must be 4 positive integers; got {hidden_channels!r}"
            )
        if not isinstance(num_downsamples, int) or not 0 <= num_downsamples <= 4:
            raise ConfigError(f"PoseNet: num_downsamples must be in 0..4; got {num_downsamples!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_downsamples = num_downsamples

        layers: list[nn.Module] = []
        width_in = in_channels
        for index, width in enumerate(hidden_channels):
            stride = 2 if index < num_downsamples else 1
            layers += [nn.Conv2d(width_in, width, 3, stride=stride, padding=1), nn.SiLU()]
            width_in = width
        self.blocks = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(width_in, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def downsamples_for(image_size: tuple[int, int], latent_size: tuple[int, int]) -> int:
        """Stride-2 convs that bring ``image_size`` closest to ``latent_size`` without undershooting."""
        ratio = min(image_size[0] / latent_size[0], image_size[1] / latent_size[1])
        count = 0
        while count < 4 and ratio >= 2.0:
            ratio /= 2.0
            count += 1
        return count

    def forward(self, pose_maps: torch.Tensor, output_size: tuple[int, int] | None = None) -> PoseNetOutput:
        """Encode pose maps.

        Args:
            pose_maps: (N, in_channels, H, W), N = B * T.
            output_size: (h, w) of the U-Net's first feature map; default: no resizing.

        Returns:
            :class:`PoseNetOutput` with features (N, out_channels, h, w).
        """
        if pose_maps.ndim != 4 or pose_maps.shape[1] != self.in_channels:
            raise DataError(
                f"pose_maps must have shape (N, {self.in_channels}, H, W); got {tuple(pose_maps.shape)}"
            )
        # 1. Conv/SiLU stack (strided to approach the latent resolution).
        features = self.blocks(pose_maps)
        # 2. Exact latent resolution.
        if output_size is not None and tuple(features.shape[-2:]) != tuple(output_size):
            shrinking = features.shape[-2] >= output_size[0] and features.shape[-1] >= output_size[1]
            features = F.interpolate(
                features, size=tuple(output_size), mode="area" if shrinking else "bilinear"
            )
        # 3. Zero-initialised projection to the U-Net width.
        return PoseNetOutput(features=self.conv_out(features))
