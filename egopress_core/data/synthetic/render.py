"""RGB-D rendering of a hand over the pad with open3d's CPU ray casting.

The renders are meant to look like an egocentric RGB-D camera over a hand at work, because a
real hand detector (MediaPipe's, the camera-only path of ``egopress_core.perception``) has to
find the hand in them, and because a model trained on them meets real cameras later. Flat,
uniformly coloured, faceted hands on a skin-coloured table are out of that detector's
distribution (it found the hand in 0 of 90 frames of the sample bag rendered that way). So:

- skin: a per-sequence tone from a range of human skin tones (light to dark), lighter palms
  (markedly so on dark skin, as on real hands), an albedo that varies over the hand (blotches,
  knuckles, nails) and a fine surface texture; both are fixed to the hand's rest pose (see
  :class:`SkinTexture`), so they move with the skin instead of swimming over it;
- shading in linear light with smooth (interpolated) normals: a key light of random direction and
  colour temperature with cast shadows from the hand, a sky/ground ambient, a wrapped diffuse term
  on skin (light scattered under the skin softens the terminator) and a weak specular sheen;
- background variety: around the dark pad, a table of a random material (wood, laminate, cloth,
  plain paint, cutting mat) and colour, a wall beyond the table's far edge;
- the camera: exposure, vignetting, optical blur (also the anti-aliasing of one ray per pixel),
  sensor noise, sRGB encoding.

What makes pressure inferable from the pictures is rendered on purpose, as on real skin: the soft
tissue that would penetrate the pad is flattened onto it (the fingertip's contact patch widens
with force), and skin blanches where it is pressed (blood is pushed out, the tone shifts towards
pale yellow), more so at higher pressure.

Depth is the same ray cast as colour (the distance to the first surface along each pixel's ray),
with a depth sensor's noise and holes; only the colour image gets the camera effects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

# Sensel Morph active area (metres), the pad EgoPressure recorded with, centred at the origin.
PAD_HALF_EXTENT_M = (0.115, 0.0675)
# Pressure at which blanching is ~63 % of its full strength (capillary refill is suppressed
# from a few tens of kPa on).
BLANCHING_PRESSURE_KPA = 25.0
BLANCHED_SKIN_RGB = np.array([0.95, 0.88, 0.80])  # sRGB
# Skin tones (sRGB) from very light to very dark; a sequence's tone is drawn between two
# neighbours (roughly the range of the Monk skin tone scale's swatches, as lit skin photographs).
SKIN_TONES_RGB = np.array([
    [0.96, 0.82, 0.74],
    [0.90, 0.72, 0.60],
    [0.80, 0.59, 0.46],
    [0.66, 0.46, 0.33],
    [0.50, 0.33, 0.23],
    [0.34, 0.22, 0.15],
])  # fmt: skip
# Palms are lighter and pinker than the back of the hand, the more so the darker the skin.
PALM_RGB = np.array([0.92, 0.72, 0.64])
NAIL_RGB = np.array([0.93, 0.80, 0.77])
TABLE_KINDS = ("wood", "laminate", "cloth", "paint", "mat")
# Width of the colour image at which the optical blur has its nominal size in pixels (a
# RealSense colour stream); smaller images are the same optics sampled more coarsely.
REFERENCE_WIDTH_PX = 640
# Nearer than this a stereo depth camera reads nothing (a RealSense D435 at 640 x 480: ~0.175 m);
# the forearm can pass that close under a head camera.
MIN_DEPTH_RANGE_M = 0.17
WORLD_UP = np.array([0.0, 0.0, -1.0])  # world +z points down into the pad


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1.0 / 2.4) - 0.055)


def _random_waves(rng: np.random.Generator, count: int, wavelength_m: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(count, 3) wave vectors (radians per metre) in random directions with wavelengths drawn
    log-uniformly from ``wavelength_m``, and (count,) phases: a cheap smooth 3D noise is
    ``mean(sin(points @ vectors.T + phases))``."""
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelength = np.exp(rng.uniform(*np.log(wavelength_m), size=count))
    return directions * (2.0 * np.pi / wavelength)[:, None], rng.uniform(0.0, 2.0 * np.pi, size=count)


def _wave_noise(points: np.ndarray, waves: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(N, 3) points -> (N,) smooth noise of zero mean and standard deviation ~0.7 / sqrt(count)."""
    vectors, phases = waves
    return np.sin(points @ vectors.T + phases).mean(axis=1)


@dataclass(frozen=True)
class Appearance:
    """Per-sequence look: skin tone, lighting, table and pad, camera and depth sensor.

    Colours are sRGB in [0, 1] (as one would pick them); light intensities are linear.
    """

    skin_rgb: np.ndarray  # (3,) back of the hand
    palm_rgb: np.ndarray  # (3,)
    light_direction_world: np.ndarray  # (3,) unit vector the key light travels along
    light_rgb: np.ndarray  # (3,) key light, linear
    sky_rgb: np.ndarray  # (3,) ambient from above, linear
    ground_rgb: np.ndarray  # (3,) ambient from below, linear
    specular: float  # skin's specular strength
    pad_rgb: np.ndarray  # (3,)
    table_kind: str  # one of TABLE_KINDS
    table_rgb: np.ndarray  # (3,) the table's main colour
    table_rgb_2: np.ndarray  # (3,) its second colour (grain, check, speckle, grid lines)
    table_scale_m: float  # the pattern's period
    table_angle: float  # the pattern's direction on the table, radians
    wall_rgb: np.ndarray  # (3,)
    sleeve_rgb: np.ndarray | None  # (3,) a sleeve over the forearm, or None (bare arm)
    sleeve_from_m: float  # where the sleeve starts, metres from the wrist
    exposure: float
    vignetting: float  # relative darkening at the image corners
    blur_px: float  # optical blur sigma at REFERENCE_WIDTH_PX
    colour_noise: float  # sensor noise, sRGB units
    depth_noise_mm_at_half_metre: float
    dropout_probability: float

    @staticmethod
    def sample(rng: np.random.Generator) -> "Appearance":
        tone = rng.uniform(0.0, len(SKIN_TONES_RGB) - 1)
        low = int(min(tone, len(SKIN_TONES_RGB) - 2))
        skin = SKIN_TONES_RGB[low] + (tone - low) * (SKIN_TONES_RGB[low + 1] - SKIN_TONES_RGB[low])
        # Undertone: a little redder or more yellow.
        skin = np.clip(skin * (1.0 + np.array([1.0, 0.0, -1.0]) * rng.uniform(-0.04, 0.04)), 0.0, 1.0)
        darkness = tone / (len(SKIN_TONES_RGB) - 1)
        palm = skin + (0.12 + 0.45 * darkness) * (PALM_RGB - skin)

        # Key light: any azimuth, 25-85 degrees above the table; warm (tungsten) to cool (shade).
        elevation, azimuth = np.deg2rad(rng.uniform(25.0, 85.0)), rng.uniform(0.0, 2.0 * np.pi)
        towards_light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), -np.sin(elevation)])
        warmth = rng.uniform(-1.0, 1.0)
        tint = np.array([1.0 + 0.12 * warmth, 1.0, 1.0 - 0.18 * warmth])
        ambient = rng.uniform(0.2, 0.55)  # share of ambient in the light falling on a lit surface
        sky_tint = np.array([1.0 - 0.06 * warmth, 1.0, 1.0 + 0.08 * warmth]) * rng.uniform(0.95, 1.05, size=3)

        kind = TABLE_KINDS[int(rng.integers(len(TABLE_KINDS)))]
        if kind == "wood":  # light oak to dark walnut
            shade = rng.uniform()
            table = np.array([0.80, 0.64, 0.45]) + shade * (np.array([0.32, 0.21, 0.13]) - np.array([0.80, 0.64, 0.45]))
            table_2 = table * rng.uniform(0.6, 0.8)
            scale = rng.uniform(0.004, 0.012)
        elif kind == "mat":  # a cutting mat: green, blue, grey or black with a light 1 cm grid
            table = np.array([[0.15, 0.35, 0.25], [0.12, 0.22, 0.40], [0.35, 0.36, 0.38], [0.10, 0.10, 0.11]])[int(rng.integers(4))]
            table = np.clip(table * rng.uniform(0.8, 1.2), 0.0, 1.0)
            table_2 = np.clip(table + rng.uniform(0.25, 0.45), 0.0, 1.0)
            scale = 0.01
        else:  # any colour, from grey to saturated, dark to light
            table = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95))
            table_2 = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 0.95)) if kind == "cloth" else table * rng.uniform(0.7, 1.3)
            scale = {"cloth": rng.uniform(0.01, 0.04), "laminate": rng.uniform(0.001, 0.003), "paint": rng.uniform(0.05, 0.2)}[kind]
        return Appearance(
            skin_rgb=skin,
            palm_rgb=palm,
            light_direction_world=-towards_light,
            light_rgb=(1.0 - ambient) * tint,
            sky_rgb=ambient * sky_tint,
            ground_rgb=ambient * rng.uniform(0.3, 0.6) * sky_tint,
            specular=rng.uniform(0.02, 0.08),
            pad_rgb=np.array([0.12, 0.12, 0.13]) + rng.uniform(-0.04, 0.04),
            table_kind=kind,
            table_rgb=np.clip(table, 0.0, 1.0),
            table_rgb_2=np.clip(table_2, 0.0, 1.0),
            table_scale_m=float(scale),
            table_angle=rng.uniform(0.0, np.pi),
            wall_rgb=_hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.5, 0.95)),
            sleeve_rgb=_hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.7), rng.uniform(0.1, 0.9)) if rng.uniform() < 0.5 else None,
            sleeve_from_m=rng.uniform(0.03, 0.15),
            exposure=rng.uniform(0.8, 1.15),
            vignetting=rng.uniform(0.0, 0.35),
            blur_px=rng.uniform(0.5, 1.0),
            colour_noise=rng.uniform(0.006, 0.02),
            depth_noise_mm_at_half_metre=rng.uniform(1.0, 2.5),
            dropout_probability=rng.uniform(0.002, 0.01),
        )


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    channel = np.mod(hue * 6.0 + np.array([5.0, 3.0, 1.0]), 6.0)
    return value - value * saturation * np.clip(np.minimum(channel, 4.0 - channel), 0.0, 1.0)


@dataclass(frozen=True)
class SkinTexture:
    """The skin's colour over the hand, fixed to its rest pose.

    Attributes:
        vertex_albedo: (V, 3) linear albedo per vertex: back or palm tone, blotches, knuckles, nails.
        vertex_specular: (V,) specular strength per vertex (nails are shinier).
        rest_vertices: (V, 3) rest-pose positions: a surface point's coordinates for the fine
            texture, so that the pattern stays on the skin when the hand moves.
        fine_waves: the fine texture's noise waves (see ``_wave_noise``).
        fine_amplitude: its relative albedo variation.
    """

    vertex_albedo: np.ndarray
    vertex_specular: np.ndarray
    rest_vertices: np.ndarray
    fine_waves: tuple[np.ndarray, np.ndarray]
    fine_amplitude: float

    @staticmethod
    def uniform(appearance: Appearance, num_vertices: int) -> "SkinTexture":
        """One colour all over (hands whose rest pose is not known)."""
        return SkinTexture(
            vertex_albedo=np.repeat(srgb_to_linear(appearance.skin_rgb)[None], num_vertices, axis=0),
            vertex_specular=np.full(num_vertices, appearance.specular),
            rest_vertices=np.zeros((num_vertices, 3)),
            fine_waves=(np.zeros((1, 3)), np.zeros(1)),
            fine_amplitude=0.0,
        )

    @staticmethod
    def sample(
        rng: np.random.Generator,
        appearance: Appearance,
        rest_vertices: np.ndarray,
        faces: np.ndarray,
        rest_joints: np.ndarray,
        palm_normal: np.ndarray,
    ) -> "SkinTexture":
        """The skin of one sequence's hand.

        Args:
            rest_vertices: (V, 3) flat-hand vertices; faces: (F, 3).
            rest_joints: (21, 3) flat-hand joints, OpenPose order (tips 4, 8, 12, 16, 20).
            palm_normal: (3,) unit normal out of the palm in the rest pose.
        """
        normals = vertex_normals(rest_vertices, faces)
        # 1 on the palm side (palm and the fingers' palmar side), 0 on the back, smooth between.
        palmness = np.clip((normals @ palm_normal + 0.15) / 0.5, 0.0, 1.0)
        palmness = palmness * palmness * (3.0 - 2.0 * palmness)
        back, palm = srgb_to_linear(appearance.skin_rgb), srgb_to_linear(appearance.palm_rgb)
        albedo = back[None] + palmness[:, None] * (palm - back)[None]
        # Blotches a few centimetres across: brightness and redness vary by some percent.
        blotch = _wave_noise(rest_vertices, _random_waves(rng, 8, (0.01, 0.04))) * 2.5
        redness = _wave_noise(rest_vertices, _random_waves(rng, 8, (0.008, 0.03))) * 2.5
        albedo = albedo * (1.0 + 0.07 * blotch[:, None]) * (1.0 + 0.06 * redness[:, None] * np.array([1.0, -0.5, -0.5]))
        # Knuckles and finger joints: darker and redder skin on the back (creased, thicker).
        knuckle = np.zeros(len(rest_vertices))
        for joint, radius in ((2, 0.009), (3, 0.007), (5, 0.010), (9, 0.010), (13, 0.010), (17, 0.009),
                              (6, 0.007), (10, 0.007), (14, 0.007), (18, 0.006), (7, 0.005), (11, 0.005), (15, 0.005), (19, 0.005)):
            distance = np.linalg.norm(rest_vertices - rest_joints[joint], axis=1)
            knuckle = np.maximum(knuckle, np.exp(-0.5 * (distance / radius) ** 2))  # fmt: skip
        knuckle *= 1.0 - palmness
        strength = rng.uniform(0.08, 0.2)
        albedo = albedo * (1.0 - strength * knuckle[:, None] * np.array([0.6, 1.0, 1.0]))
        # Nails: the back of each fingertip, beyond the middle of its last bone.
        nail = np.zeros(len(rest_vertices))
        for tip, dip in ((4, 3), (8, 7), (12, 11), (16, 15), (20, 19)):
            bone = rest_joints[tip] - rest_joints[dip]
            along = (rest_vertices - rest_joints[dip]) @ bone / float(bone @ bone)
            near = np.linalg.norm(rest_vertices - rest_joints[tip], axis=1) < 1.1 * np.linalg.norm(bone)
            nail = np.maximum(nail, np.clip((along - 0.35) / 0.2, 0.0, 1.0) * near)
        nail *= np.clip(1.0 - 2.0 * palmness, 0.0, 1.0)
        albedo = albedo + 0.65 * nail[:, None] * (srgb_to_linear(NAIL_RGB) * (albedo.mean(axis=1, keepdims=True) / 0.3) ** 0.3 - albedo)
        return SkinTexture(
            vertex_albedo=np.clip(albedo, 0.0, 1.0),
            vertex_specular=appearance.specular * (1.0 + 2.0 * nail),
            rest_vertices=np.asarray(rest_vertices, dtype=np.float64),
            fine_waves=_random_waves(rng, 12, (0.003, 0.012)),
            fine_amplitude=rng.uniform(0.03, 0.06),
        )


@dataclass(frozen=True)
class Scenery:
    """Geometry drawn with the hand that is not the hand (the forearm): in colour and depth, and
    casting shadows, but outside the hand mask and without pressure.

    Attributes:
        vertices: (M, 3) world frame; faces: (G, 3) indices into them.
        albedo: (M, 3) linear albedo; texture_points: (M, 3) coordinates for the fine texture.
        specular: (M,) specular strength.
    """

    vertices: np.ndarray
    faces: np.ndarray
    albedo: np.ndarray
    texture_points: np.ndarray
    specular: np.ndarray


def forearm_albedo(appearance: Appearance, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) forearm-frame coordinates (first: metres from the wrist) -> (M, 3) linear albedo and
    (M,) specular: the back of the hand's skin tone, or a matte sleeve from ``sleeve_from_m`` on."""
    albedo = np.repeat(srgb_to_linear(appearance.skin_rgb)[None], len(local), axis=0)
    specular = np.full(len(local), appearance.specular)
    if appearance.sleeve_rgb is not None:
        sleeve = local[:, 0] >= appearance.sleeve_from_m
        albedo[sleeve] = srgb_to_linear(appearance.sleeve_rgb)
        specular[sleeve] = 0.0
    return albedo, specular


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals (outward for the hand's winding)."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def flatten_onto_pad(vertices_world: np.ndarray) -> np.ndarray:
    """(V, 3) -> (V, 3): tissue that would penetrate the pad (z > 0) rests on it (z = 0)."""
    flattened = vertices_world.copy()
    flattened[:, 2] = np.minimum(flattened[:, 2], 0.0)
    return flattened


def _band_limit(period_m: float, footprint_m: np.ndarray) -> np.ndarray:
    """How much of a pattern of period ``period_m`` survives averaging over a pixel's footprint
    on the surface (the response of a Gaussian of that width): a pattern finer than the pixels
    fades to its mean instead of aliasing into moire."""
    return np.exp(-2.0 * (np.pi * 0.5 * footprint_m / period_m) ** 2)


def _plane_albedo(x: np.ndarray, y: np.ndarray, footprint_m: np.ndarray, appearance: Appearance) -> np.ndarray:
    """(N,) pad-plane coordinates and pixel footprints (metres) -> (N, 3) linear albedo: the dark
    pad with a faint 1 cm grid inside the active area, the table's material outside it."""
    inside = (np.abs(x) <= PAD_HALF_EXTENT_M[0]) & (np.abs(y) <= PAD_HALF_EXTENT_M[1])
    albedo = _table_albedo(x, y, footprint_m, appearance)
    grid = np.minimum(np.abs(np.mod(x[inside], 0.01) - 0.005), np.abs(np.mod(y[inside], 0.01) - 0.005)) > 0.0045
    # The 0.5 mm lines cover a tenth of the pad: below a pixel's size they only lighten it.
    line = 0.1 + (grid - 0.1) * _band_limit(0.002, footprint_m[inside])
    albedo[inside] = srgb_to_linear(appearance.pad_rgb)[None] + (srgb_to_linear(appearance.pad_rgb + 0.06) - srgb_to_linear(appearance.pad_rgb))[None] * line[:, None]
    return albedo


def _table_albedo(x: np.ndarray, y: np.ndarray, footprint_m: np.ndarray, appearance: Appearance) -> np.ndarray:
    """(N,) table-plane coordinates and pixel footprints -> (N, 3) linear albedo of the table's
    material: a mix of its two colours, each pattern band-limited to what the pixel resolves."""
    cos, sin = np.cos(appearance.table_angle), np.sin(appearance.table_angle)
    along, across = cos * x + sin * y, -sin * x + cos * y
    scale, kind = appearance.table_scale_m, appearance.table_kind
    tau = 2.0 * np.pi
    if kind == "wood":  # growth rings bent by slow waves, with fine streaks along the grain
        rings = np.sin(tau * (across / scale + 0.6 * np.sin(tau * along / 0.4) + 0.15 * np.sin(tau * across / 0.05)))
        mix = 0.5 + 0.5 * rings**3 * _band_limit(0.5 * scale, footprint_m) + 0.15 * np.sin(tau * across / 0.0007) * _band_limit(0.0007, footprint_m)
    elif kind == "cloth":  # gingham check with a fine weave
        stripes = (np.mod(along / scale, 1.0) < 0.5).astype(np.float64) + (np.mod(across / scale, 1.0) < 0.5)
        weave = np.sin(tau * along / 0.0012) * np.sin(tau * across / 0.0012)
        mix = 0.5 + 0.5 * (stripes - 1.0) * _band_limit(scale, footprint_m) + 0.08 * weave * _band_limit(0.0012, footprint_m)
    elif kind == "mat":  # grid lines every centimetre (a twentieth of the area), thicker every five
        line = np.minimum(np.abs(np.mod(along, scale) - 0.5 * scale), np.abs(np.mod(across, scale) - 0.5 * scale)) > 0.47 * scale
        major = np.minimum(np.abs(np.mod(along, 5 * scale) - 2.5 * scale), np.abs(np.mod(across, 5 * scale) - 2.5 * scale)) > 2.45 * scale
        lines = line | major
        mix = 0.7 * (0.12 + (lines - 0.12) * _band_limit(0.2 * scale, footprint_m))
    elif kind == "laminate":  # speckles about a millimetre across, covering a fifth of the area
        field = np.sin(along / scale * 2.1 + 3.0 * np.sin(across / scale * 1.3)) * np.sin(across / scale * 1.7 + 2.0 * np.sin(along / scale * 0.9))
        mix = 0.5 * (0.2 + ((field > 0.6) - 0.2) * _band_limit(scale, footprint_m))
    else:  # paint: slow, faint variation
        mix = 0.5 + 0.25 * np.sin(tau * along / scale) * np.sin(tau * across / (0.7 * scale))
    one, two = srgb_to_linear(appearance.table_rgb), srgb_to_linear(appearance.table_rgb_2)
    return one[None] + np.clip(mix, 0.0, 1.0)[:, None] * (two - one)[None]


def _rays_hit_box(origins: np.ndarray, directions: np.ndarray, box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each ray (t >= 0) passes through the axis-aligned box (slab test)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t0 = (box_min - origins) * inverse
        t1 = (box_max - origins) * inverse
    t_near = np.nanmax(np.minimum(t0, t1), axis=1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=1)
    return (t_far >= np.maximum(t_near, 0.0)) & np.isfinite(t_far)


def _box_corners(box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    return np.array([[(box_min, box_max)[i][0], (box_min, box_max)[j][1], (box_min, box_max)[k][2]]
                     for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # fmt: skip


def _cast(scene, origins: np.ndarray, directions: np.ndarray) -> dict[str, np.ndarray]:
    """Casts the rays (float32 for open3d); t_hit is inf where nothing is hit."""
    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hits["t_hit"].numpy().astype(np.float64)
    return {
        "t_hit": t_hit,
        "primitive_ids": np.where(np.isfinite(t_hit), hits["primitive_ids"].numpy().astype(np.int64), 0),
        "primitive_uvs": hits["primitive_uvs"].numpy().astype(np.float64),
    }


_GRID_CACHE: dict = {}


def _pixel_grid(intrinsics: np.ndarray, image_size: tuple[int, int]):
    """Per pixel (flattened): u and v of its centre, its ray direction in the camera frame (z = 1)
    and its squared distance from the image centre relative to the corners' (for vignetting).
    The same for every frame of a sequence, so the last camera's is kept."""
    key = (np.asarray(intrinsics, dtype=np.float64).tobytes(), tuple(image_size))
    if key not in _GRID_CACHE:
        height, width = image_size
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        u, v = u.ravel(), v.ravel()
        directions = np.stack([u, v, np.ones(u.size)], axis=1) @ np.linalg.inv(intrinsics).T
        radius2 = (((u - 0.5 * width) ** 2 + (v - 0.5 * height) ** 2) / (0.25 * (width**2 + height**2))).reshape(height, width)
        _GRID_CACHE.clear()
        _GRID_CACHE[key] = (u, v, directions, radius2)
    return _GRID_CACHE[key]


_SRGB_LUT_SIZE = 4096
_SRGB_LUT = (np.clip(linear_to_srgb(np.linspace(0.0, 1.0, _SRGB_LUT_SIZE)), 0.0, 1.0) * 255.0).astype(np.float32)


def render_rgbd(
    vertices_world: np.ndarray,
    faces: np.ndarray,
    vertex_pressure_kpa: np.ndarray,
    camera_from_world: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    appearance: Appearance,
    rng: np.random.Generator,
    skin: SkinTexture | None = None,
    return_hand_mask: bool = False,
    scenery: Scenery | None = None,
):
    """Renders one frame.

    Args:
        vertices_world: (V, 3) posed hand vertices, world frame (may penetrate the pad).
        faces: (F, 3) triangle vertex indices.
        vertex_pressure_kpa: (V,) contact pressure, drives blanching.
        camera_from_world: (4, 4); intrinsics: (3, 3); image_size: (H, W).
        skin: the hand's skin texture (None: the appearance's skin tone all over).
        return_hand_mask: also return the (H, W) bool mask of pixels that see the hand.
        scenery: other geometry in view (the forearm), or None.
    Returns:
        rgb (H, W, 3) uint8 and depth (H, W) uint16 millimetres along the optical axis,
        0 where the simulated sensor has no reading (and the hand mask if asked for).
    """
    from scipy.ndimage import gaussian_filter

    height, width = image_size
    count = height * width
    faces = np.asarray(faces, dtype=np.int64)
    if skin is None:
        skin = SkinTexture.uniform(appearance, len(vertices_world))
    hand_faces = len(faces)
    vertex_albedo, vertex_specular, texture_points = skin.vertex_albedo, skin.vertex_specular, skin.rest_vertices
    if scenery is not None:
        # One scene: the scenery's faces follow the hand's, so primitive ids below
        # ``hand_faces`` are the hand's.
        faces = np.concatenate([faces, np.asarray(scenery.faces, dtype=np.int64) + len(vertices_world)])
        vertices_world = np.concatenate([vertices_world, scenery.vertices])
        vertex_pressure_kpa = np.concatenate([vertex_pressure_kpa, np.zeros(len(scenery.vertices))])
        vertex_albedo = np.concatenate([vertex_albedo, scenery.albedo])
        vertex_specular = np.concatenate([vertex_specular, scenery.specular])
        texture_points = np.concatenate([texture_points, scenery.texture_points])
    surface = flatten_onto_pad(vertices_world)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(surface.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))

    # 1. Primary rays through pixel centres, in world coordinates.
    rotation, translation = camera_from_world[:3, :3], camera_from_world[:3, 3]
    origin = -rotation.T @ translation
    u, v, directions_camera, radius2 = _pixel_grid(intrinsics, (height, width))
    directions = directions_camera @ rotation  # == (rotation.T @ d.T).T
    box_min, box_max = surface.min(axis=0) - 1e-3, surface.max(axis=0) + 1e-3
    # Only rays that pass through the hand's bounding box can hit it: those inside the image
    # rectangle around the projected box corners (all in front of the camera), else the slab test.
    corners_camera = _box_corners(box_min, box_max) @ rotation.T + translation
    if (corners_camera[:, 2] > 1e-3).all():
        corner_px = corners_camera[:, :2] / corners_camera[:, 2:] @ intrinsics[:2, :2].T + intrinsics[:2, 2]
        (u0, v0), (u1, v1) = np.floor(corner_px.min(axis=0)) - 1, np.ceil(corner_px.max(axis=0)) + 1
        near_hand = np.flatnonzero((u >= u0) & (u <= u1) & (v >= v0) & (v <= v1))
    else:
        near_hand = np.flatnonzero(_rays_hit_box(np.broadcast_to(origin, directions.shape), directions, box_min, box_max))
    hand_t = np.full(count, np.inf)
    primitive = np.zeros(count, dtype=np.int64)
    barycentric_uv = np.zeros((count, 2))
    if len(near_hand):
        hits = _cast(scene, np.broadcast_to(origin, (len(near_hand), 3)), directions[near_hand])
        hand_t[near_hand], primitive[near_hand], barycentric_uv[near_hand] = hits["t_hit"], hits["primitive_ids"], hits["primitive_uvs"]
    # The pad plane z = 0 is intersected analytically (rays point down into it: d_z > 0).
    down = directions[:, 2] > 1e-9
    pad_t = np.where(down, -origin[2] / np.where(down, directions[:, 2], 1.0), np.inf)
    on_hand = hand_t < pad_t
    hand = np.flatnonzero(on_hand)
    plane = np.flatnonzero(~on_hand & down)
    # Rays above the horizon hit neither: a far wall, out of the depth sensor's range.
    background = ~on_hand & ~down
    t = np.where(on_hand, hand_t, np.where(down, pad_t, 0.0))

    # 2. Surface attributes. Hand pixels: smooth normals, pressure, albedo and rest-pose position
    #    interpolated inside each hit triangle. Table and pad pixels: the plane's, the pattern
    #    band-limited by the pixel's footprint (its size on the plane, grazing views stretch it).
    hand_points = origin + hand_t[hand, None] * directions[hand]
    corners = faces[primitive[hand]]  # (N, 3)
    weights = np.stack([1.0 - barycentric_uv[hand].sum(axis=1), barycentric_uv[hand, 0], barycentric_uv[hand, 1]], axis=1)

    def interpolate(values: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nk...->n...", weights, values[corners])

    hand_normals = interpolate(vertex_normals(surface, faces))
    hand_normals /= np.maximum(np.linalg.norm(hand_normals, axis=1, keepdims=True), 1e-12)
    flip = np.einsum("ij,ij->i", hand_normals, directions[hand]) > 0  # light both sides of thin parts
    hand_normals[flip] *= -1.0
    pressure = interpolate(vertex_pressure_kpa)
    blanching = 1.0 - np.exp(-pressure / BLANCHING_PRESSURE_KPA)
    fine = 1.0 + skin.fine_amplitude * np.sqrt(2.0 * len(skin.fine_waves[1])) * _wave_noise(interpolate(texture_points), skin.fine_waves)
    hand_albedo = interpolate(vertex_albedo) * fine[:, None]
    hand_albedo += 0.7 * blanching[:, None] * (srgb_to_linear(BLANCHED_SKIN_RGB) - hand_albedo)

    plane_directions = directions[plane]
    plane_xy = origin[:2] + pad_t[plane, None] * plane_directions[:, :2]
    focal = 0.5 * (intrinsics[0, 0] + intrinsics[1, 1])
    footprint = pad_t[plane] * np.einsum("ij,ij->i", plane_directions, plane_directions) / (focal * plane_directions[:, 2])
    plane_albedo = _plane_albedo(plane_xy[:, 0], plane_xy[:, 1], footprint, appearance)

    # 3. Shading in linear light: key light with cast shadows from the hand, sky/ground ambient,
    #    wrapped diffuse and a specular sheen on skin. Plane points can only be shadowed inside
    #    the rectangle around the hand box's shadow on the plane.
    towards_light = -appearance.light_direction_world
    light_direction = appearance.light_direction_world
    corners_world = _box_corners(box_min, box_max)
    shadow_xy = corners_world[:, :2] - (corners_world[:, 2] / light_direction[2])[:, None] * light_direction[:2]
    shadow_xy = np.concatenate([shadow_xy, corners_world[:, :2]])
    (x0, y0), (x1, y1) = shadow_xy.min(axis=0), shadow_xy.max(axis=0)
    plane_candidates = np.flatnonzero((plane_xy[:, 0] >= x0) & (plane_xy[:, 0] <= x1) & (plane_xy[:, 1] >= y0) & (plane_xy[:, 1] <= y1))
    plane_shadowed = np.zeros(len(plane), dtype=bool)
    hand_shadowed = np.zeros(len(hand), dtype=bool)
    shadow_origins = np.concatenate([hand_points + 1e-4 * hand_normals, np.column_stack([plane_xy[plane_candidates], np.full(len(plane_candidates), -1e-4)])])
    if len(shadow_origins):
        blocked = np.isfinite(_cast(scene, shadow_origins, np.broadcast_to(towards_light, shadow_origins.shape))["t_hit"])
        hand_shadowed, plane_shadowed[plane_candidates] = blocked[: len(hand)], blocked[len(hand) :]

    cosine = hand_normals @ towards_light
    wrap = 0.35  # light scattered under the skin reaches past the terminator
    diffuse = np.clip((cosine + wrap) / (1.0 + wrap), 0.0, None) * ~hand_shadowed
    skyward = 0.5 * (1.0 + hand_normals @ WORLD_UP)
    sky, ground, key = appearance.sky_rgb, appearance.ground_rgb, appearance.light_rgb
    irradiance = ground + skyward[:, None] * (sky - ground) + diffuse[:, None] * key
    view = -directions[hand] / np.linalg.norm(directions[hand], axis=1, keepdims=True)
    halfway = view + towards_light
    halfway /= np.maximum(np.linalg.norm(halfway, axis=1, keepdims=True), 1e-12)
    gloss = np.clip(np.einsum("ij,ij->i", hand_normals, halfway), 0.0, 1.0) ** 24 * (cosine > 0) * ~hand_shadowed
    radiance = np.empty((count, 3), dtype=np.float32)
    radiance[hand] = hand_albedo * irradiance + (interpolate(vertex_specular) * gloss)[:, None] * key
    plane_cosine = max(float(towards_light @ WORLD_UP), 0.0)  # the plane faces up
    radiance[plane] = plane_albedo * (sky + np.where(plane_shadowed, 0.0, plane_cosine)[:, None] * key)
    radiance[background] = srgb_to_linear(appearance.wall_rgb) * (sky + 0.5 * key)

    # 4. The colour camera: exposure with vignetting, optics (blur), sensor noise, sRGB.
    image = radiance.reshape(height, width, 3) * (appearance.exposure * (1.0 - appearance.vignetting * radius2))[..., None].astype(np.float32)
    sigma = appearance.blur_px * width / REFERENCE_WIDTH_PX
    if sigma >= 0.25:
        image = gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=2.5)
    index = (np.clip(image, 0.0, 1.0) * (_SRGB_LUT_SIZE - 1) + 0.5).astype(np.int32)
    colour = _SRGB_LUT[index] + np.float32(255.0 * appearance.colour_noise) * rng.standard_normal(size=image.shape, dtype=np.float32)
    rgb = np.clip(colour + 0.5, 0.0, 255.0).astype(np.uint8)

    # 5. Depth as a structured-light / ToF sensor sees it: axial noise growing with distance
    #    squared, drop-outs at depth edges, at random and nearer than the minimum range.
    depth_m = (t * directions_camera[:, 2]).reshape(height, width)
    noise_mm = appearance.depth_noise_mm_at_half_metre * (depth_m / 0.5) ** 2
    depth_mm = depth_m * 1000.0 + rng.normal(size=depth_m.shape) * noise_mm
    edge = np.zeros_like(depth_m, dtype=bool)
    jump = np.abs(np.diff(depth_m, axis=1)) > 0.015
    edge[:, 1:] |= jump
    edge[:, :-1] |= jump
    jump = np.abs(np.diff(depth_m, axis=0)) > 0.015
    edge[1:] |= jump
    edge[:-1] |= jump
    holes = (edge & (rng.random(depth_m.shape) < 0.6)) | (rng.random(depth_m.shape) < appearance.dropout_probability)
    holes |= background.reshape(height, width) | (depth_m < MIN_DEPTH_RANGE_M)
    depth = np.round(np.where(holes | ~np.isfinite(depth_mm), 0.0, np.clip(depth_mm, 0.0, 65535.0))).astype(np.uint16)
    if return_hand_mask:
        return rgb, depth, (on_hand & (primitive < hand_faces)).reshape(height, width)
    return rgb, depth
