"""Time profiles of a gesture: the force the hand applies and its height when not touching."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ContactProfile:
    """Per-frame target normal force and hover gap.

    force_n[t] > 0 means the hand presses with that total force; otherwise gap_m[t] is how far
    the lowest point of the contacting parts stays above the pad.
    """

    force_n: np.ndarray  # (T,)
    gap_m: np.ndarray  # (T,)
    description: str


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def press_profile(
    rng: np.random.Generator,
    num_frames: int,
    peak_force_n: float,
    presses: int = 1,
    ramp_fraction: tuple[float, float] = (0.2, 0.4),
) -> ContactProfile:
    """Approach, ``presses`` press-hold-release cycles, and lift-off, with a wobbly hold.

    The pressing phases fill the middle of the sequence; each press ramps smoothly up to a
    peak drawn around ``peak_force_n``, holds with slow variations, and ramps down. Each ramp
    takes a share of its press's span drawn from ``ramp_fraction`` (up to 0.5: no hold).
    """
    times = np.arange(num_frames, dtype=np.float64)
    force = np.zeros(num_frames)
    approach = rng.uniform(0.08, 0.2) * num_frames
    release = num_frames - rng.uniform(0.08, 0.2) * num_frames
    edges = np.linspace(approach, release, presses + 1)
    for start, end in zip(edges[:-1], edges[1:]):
        span = end - start
        gap_between = 0.15 * span if presses > 1 else 0.0
        start, end = start + gap_between / 2, end - gap_between / 2
        span = end - start
        ramp = rng.uniform(*ramp_fraction) * span
        peak = peak_force_n * rng.uniform(0.6, 1.2)
        envelope = _smoothstep((times - start) / ramp) * _smoothstep((end - times) / ramp)
        wobble = 1.0 + 0.15 * np.sin(2 * np.pi * times / rng.uniform(10, 30) + rng.uniform(0, 6.3))
        force = np.maximum(force, peak * envelope * wobble)
    force[force < 0.02] = 0.0
    # Off the pad: approach from and retreat to 1-4 cm, touching-distance in between presses.
    hover = rng.uniform(0.01, 0.04)
    in_press_window = (times >= edges[0]) & (times <= edges[-1])
    gap = np.where(
        in_press_window,
        0.002,
        hover * np.maximum(_smoothstep((edges[0] - times) / max(edges[0], 1.0)),
                           _smoothstep((times - edges[-1]) / max(num_frames - edges[-1], 1.0))),
    )
    gap = np.maximum(gap, 0.001)
    return ContactProfile(force_n=force, gap_m=gap, description=f"{presses} press(es), peak {peak_force_n:.2f} N")


def hover_profile(rng: np.random.Generator, num_frames: int, gap_m: tuple[float, float] | None = None) -> ContactProfile:
    """No contact. By default the hand drifts 5-50 mm above the pad, sometimes coming close;
    with ``gap_m`` (low, high) it stays between those heights (metres), drifting slowly."""
    times = np.arange(num_frames)
    if gap_m is not None:
        low, high = gap_m
        gap = low + (high - low) * 0.5 * (1.0 + np.sin(2 * np.pi * times / rng.uniform(20, 60) + rng.uniform(0, 6.3)))
        return ContactProfile(force_n=np.zeros(num_frames), gap_m=gap, description=f"hover {low * 1000:.0f}-{high * 1000:.0f} mm, no contact")
    base = rng.uniform(0.008, 0.03)
    gap = base + 0.6 * base * np.sin(2 * np.pi * times / rng.uniform(20, 60) + rng.uniform(0, 6.3))
    return ContactProfile(
        force_n=np.zeros(num_frames), gap_m=np.maximum(gap, 0.004), description="hover, no contact"
    )
