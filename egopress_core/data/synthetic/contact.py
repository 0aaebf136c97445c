"""Soft-tissue contact between the hand and a rigid flat pad.

The pad is the plane z = 0 of the world frame with +z pointing down into the pad (EgoPressure's
convention), so a surface point at height z has penetration ``max(z, 0)``.

Pressure follows a local (Winkler-type) soft-tissue law calibrated to Hertz's theory: a surface
point whose undeformed position lies a depth h inside the pad carries

    p = (E* / pi) sqrt(h / R),

with R the local radius of curvature of the hand (fingertip pulp ~ 8 mm, palm ~ 30 mm). For a
sphere pressed a depth delta into a rigid flat, h(r) = delta - r^2 / (2R), and integrating p
over the patch gives F = 4/3 E* sqrt(R) delta^(3/2): exactly Hertz's total force and its
delta^(3/2) stiffening. Being local, the law spreads that force over the geometric overlap
(radius sqrt(2 R delta)) instead of Hertz's sqrt(R delta), with a lower, flatter peak; it needs
no elastic half-space solve, works for any surface shape, and the force is monotone in how far
the hand is pushed, so a desired force profile is met by bisection on that push.
"""

from __future__ import annotations

import math

import numpy as np

# Effective contact modulus E* of finger-pulp soft tissue against a rigid pad, Pa. Fingertip
# indentation studies report 0.05-0.3 MPa for the first millimetres.
DEFAULT_EFFECTIVE_MODULUS_PA = 1.5e5


def hertz_pressure_kpa(
    penetration_m: np.ndarray,
    curvature_radius_m: np.ndarray | float,
    effective_modulus_pa: float = DEFAULT_EFFECTIVE_MODULUS_PA,
) -> np.ndarray:
    """Local Hertz-calibrated pressure, kPa, of surface points penetrating the pad.

    Args:
        penetration_m: (...,) penetration depth, metres; values <= 0 give zero pressure.
        curvature_radius_m: (...,) or scalar local radius of curvature, metres (> 0).
        effective_modulus_pa: E* of the tissue against the pad, Pa.
    Returns:
        (...,) pressure, kPa, >= 0.
    """
    depth = np.clip(np.asarray(penetration_m, dtype=np.float64), 0.0, None)
    radius = np.asarray(curvature_radius_m, dtype=np.float64)
    pressure_pa = (effective_modulus_pa / math.pi) * np.sqrt(depth / radius)
    return (pressure_pa / 1000.0).astype(np.float32)


def hertz_sphere_force_n(
    radius_m: float, depth_m: float, effective_modulus_pa: float = DEFAULT_EFFECTIVE_MODULUS_PA
) -> float:
    """Hertz's closed form F = 4/3 E* sqrt(R) delta^(3/2) for a sphere on a flat (for tests)."""
    return 4.0 / 3.0 * effective_modulus_pa * math.sqrt(radius_m) * max(depth_m, 0.0) ** 1.5


def solve_push_depth(
    force_of_push, target_force_n: float, max_push_m: float = 0.02, tolerance_n: float = 1e-3
) -> float:
    """Smallest downward push (metres, >= 0) whose contact force reaches ``target_force_n``.

    ``force_of_push(push_m) -> newtons`` must be non-decreasing in the push. Returns 0 for a
    target of 0 N (or below the force at zero push), and ``max_push_m`` when the target is
    out of reach.
    """
    if target_force_n <= 0.0 or force_of_push(0.0) >= target_force_n:
        return 0.0
    if force_of_push(max_push_m) <= target_force_n:
        return max_push_m
    low, high = 0.0, max_push_m
    for _ in range(60):
        middle = 0.5 * (low + high)
        force = force_of_push(middle)
        if abs(force - target_force_n) <= tolerance_n:
            return middle
        if force < target_force_n:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
