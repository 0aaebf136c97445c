"""The report of `egopress bench`: written as JSON (:func:`write_report`) and printed as plain-text
tables (:func:`format_report`). ``benchmarks/speed.py`` and ``benchmarks/speed.md`` read its fields.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from egopress_core.files import write_json_atomic


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """The report as JSON, written atomically (temporary file, then rename)."""
    return write_json_atomic(path, report)


def _ms(seconds: float) -> str:
    return f"{1000.0 * seconds:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """Plain-text tables of a report (what the command prints)."""
    machine, model = report["machine"], report["model"]
    lines = [
        f"machine: {machine.get('gpu') or machine['cpu']}, {machine['cpu_count']} CPUs, {machine['torch_threads']} "
        f"torch thread(s), torch {machine['torch']}, device {machine['device']}, load average "
        f"{machine['load_average_start']} -> {machine['load_average_end']}",
        f"model: {model['source']}, {model['parameters'] / 1e6:.2f} M parameters, window {model['num_frames']} "
        f"frames, UV {model['uv_size'][0]}x{model['uv_size'][1]}, latents {model['latent_space']} "
        f"{model['latent_size'][0]}x{model['latent_size'][1]}",
        f"bare U-Net forward (one window): median {_ms(report['unet_forward_s']['median'])} ms, "
        f"min {_ms(report['unet_forward_s']['min'])} ms, CPU {_ms(report['unet_forward_s']['cpu_median'])} ms "
        "(re-timed before each row below: 'fwd' columns are ratios to that)",
        "",
        "window from noise (offline)",
        f"{'scheduler':<12s} {'steps':>5s} {'ms/step':>8s} {'x fwd':>6s} {'cpu x fwd':>9s} {'ms/window':>10s} "
        f"{'frames/s':>9s}",
    ]
    for row in report["sampling"]:
        lines.append(f"{row['scheduler']:<12s} {row['steps']:>5d} {_ms(row['step_s']):>8s} "
                     f"{row['step_in_unet_forwards']:>6.2f} {row['step_cpu_in_unet_forwards']:>9.2f} "
                     f"{_ms(row['window_s']):>10s} {row['frames_per_s']:>9.2f}")
    lines += [
        "",
        f"streaming, per new frame, hand mesh from {report['options']['hand_backend']} (passes: U-Net passes per "
        "frame; x fwd: frame wall time / bare U-Net forward; cpu x fwd: the same in process CPU time)",
        f"{'setting':<34s} {'sched':<11s} {'steps':>5s} {'warm':>5s} {'passes':>6s} {'ms/frame':>9s} "
        f"{'cpu ms':>8s} {'x fwd':>6s} {'cpu x fwd':>9s} {'fps':>6s} {'model fps':>9s} {'RSS MB':>7s}",
    ]
    for row in report["streaming"]:
        warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
        lines.append(
            f"{row['name']:<34s} {row['scheduler']:<11s} {row['steps']:>5d} {warm:>5s} {row['unet_passes_per_frame']:>6d} "
            f"{_ms(row['total_s']['mean']):>9s} {_ms(row['cpu_s']):>8s} {row['frame_in_unet_forwards']:>6.2f} "
            f"{row['frame_cpu_in_unet_forwards']:>9.2f} {row['end_to_end_fps']:>6.2f} "
            f"{row['model_fps']:>9.2f} {row['rss_mb']:>7.0f}"
            + (f"  CUDA peak {row['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in row else "")
        )
    profile = report.get("unet_profile")
    if profile:
        shares = ", ".join(f"{name} {100.0 * share:.0f}%" for name, share in profile["shares"].items() if share >= 0.005)
        lines += ["", f"U-Net forward by operator ({profile['time']} self time {profile['total_ms']:.0f} ms): {shares}"]
        lines += [f"  {op['name']:<48s} {op['self_ms']:>8.1f} ms  x{op['calls']}" for op in profile["top_operators"][:5]]
    headline = next((row for row in report["streaming"] if row["name"] == report["headline"]), report["streaming"][0])
    lines += ["", f"components of one streaming frame ({headline['name']}): mean ms and share"]
    for name, seconds in headline["stages_s"].items():
        lines.append(f"  {name:<18s} {_ms(seconds):>9s}  {100.0 * headline['shares'][name]:5.1f}%")
    offline = report.get("offline_window_batches")
    if offline:
        lines += ["", f"offline throughput (egopress eval / label-bag path, {offline[0]['scheduler']} "
                      f"{offline[0]['steps']}, overlapping windows of {offline[0]['frames']} frames) by window batch",
                  f"{'windows':>7s} {'seconds':>8s} {'frames/s':>9s} {'x one window':>12s}"]
        for row in offline:
            lines.append(f"{row['window_batch_size']:>7d} {row['seconds']:>8.2f} {row['frames_per_s']:>9.2f} "
                         f"{_num(row['speedup_vs_one_window'], 2):>12s}")
    quality = report.get("quality")
    if quality:
        reference = quality["reference"]
        lines += [
            "",
            f"quality on {len(quality['sequences'])} held-out sequence(s), {quality['annotated_frames']} annotated frames"
            + (f" ({quality['note']})" if quality.get("note") else ""),
            "(ratio: Vol IoU / the offline reference's; causal: / the streamed reference's, if scored)",
            f"{'mode':<10s} {'sched':<11s} {'steps':>5s} {'warm':>5s} {'prec':>4s} {'vol IoU':>8s} {'ratio':>6s} "
            f"{'causal':>6s} {'contact IoU':>11s} {'MAE kPa':>8s} {'frames/s':>9s}",
            f"{'reference':<10s} {reference['scheduler']:<11s} {reference['steps']:>5d} {'-':>5s} {'fp32':>4s} "
            f"{_num(reference['volumetric_iou']):>8s} {'1.00':>6s} {'-':>6s} {_num(reference['contact_iou']):>11s} "
            f"{_num(reference['mae_kpa']):>8s} {reference['frames_per_s']:>9.2f}",
        ]
        for row in quality["settings"]:
            warm = "-" if row["warm_start_strength"] is None else f"{row['warm_start_strength']:.2f}"
            lines.append(
                f"{row['mode']:<10s} {row['scheduler']:<11s} {row['steps']:>5d} {warm:>5s} {row['precision']:>4s} "
                f"{_num(row['volumetric_iou']):>8s} "
                f"{_num(row['vol_iou_ratio'], 2):>6s} {_num(row.get('vol_iou_ratio_to_streaming_reference'), 2):>6s} "
                f"{_num(row['contact_iou']):>11s} {_num(row['mae_kpa']):>8s} "
                f"{row['frames_per_s']:>9.2f}"
            )
    lines += ["", f"peak RSS {report['memory']['rss_peak_mb']:.0f} MB"
              + (f", CUDA peak {report['memory']['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in report["memory"] else "")
              + f"; {report['seconds']:.0f} s in all"]
    return "\n".join(lines)

