"""`egopress bench`: inference speed per scheduler and step count, its profile, and its quality cost."""

from __future__ import annotations

import argparse

from egopress_core.assets import DEFAULT_CHECKPOINT, EGOPRESSDIFF_CHECKPOINT
from egopress_core.data.hands import HAND_SOURCES
from egopress_core.data.synthetic import DEMO_FRAMES, DEMO_SEQUENCES

# egopress_core.options imports no torch: `egopress --help` stays instant.
from egopress_core.options import (
    COMPILE_MODES,
    COMPILE_OFF,
    LIVE_SAMPLING,
    PRECISIONS,
    SCHEDULERS,
    RuntimeOptions,
    add_arguments,
)

# What `--live` plays by default and with --quick, for help texts: LiveBenchOptions' defaults and
# quick_live_options() (their module imports torch; test_bench checks that these agree).
LIVE_SIZE_HELP = {"sequences": f"default 3; --quick {DEMO_SEQUENCES}", "frames": f"default 150; --quick {DEMO_FRAMES}"}


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}")
    return names


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from None


def _headline(text: str) -> tuple[str, int]:
    scheduler, _, steps = text.partition(":")
    try:
        return scheduler.strip(), int(steps)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SCHEDULER:STEPS, e.g. dpmsolver++:8; got {text!r}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time inference (per step, per window, per streaming frame), profile it, check fast settings' quality",
        description=(
            "Times EgoPressDiff on held-out synthetic sequences: a bare U-Net forward (the yardstick that ratios "
            "are given in), one window from noise per scheduler and step count, and the live path frame by "
            "frame (hand-mesh fit, preprocessing, encoders, sampler, decoding, contact, message payload) for "
            "warm-started settings and variants (no warm start, no feature cache, precisions, channels-last, "
            "torch.compile), with peak memory; then scores the fast settings' Volumetric IoU against the "
            "full-step reference. Prints tables and writes a JSON report."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help=f"EgoPressDiff checkpoint folder (default: {EGOPRESSDIFF_CHECKPOINT}); "
                        f"with --live, a checkpoint of either kind (default: the package's default, {DEFAULT_CHECKPOINT})")
    source.add_argument("--config", help="time an untrained preset instead (tiny, compact, paper): speed only")
    add_arguments(parser, RuntimeOptions, names=("device",))
    parser.add_argument("--schedulers", type=_names, help=f"comma-separated (default {','.join(SCHEDULERS)}; "
                        "--quick: ddim,dpmsolver++)")
    parser.add_argument("--steps", type=_integers, help="comma-separated step counts (default 4,8,25; --quick: 4,8)")
    # The headline streaming setting defaults to the live node's sampler.
    headline = (LIVE_SAMPLING.scheduler, LIVE_SAMPLING.num_inference_steps)
    parser.add_argument("--headline", type=_headline, default=headline, metavar="SCHEDULER:STEPS",
                        help="streaming setting profiled by component, varied and scored "
                             f"(default {headline[0]}:{headline[1]})")
    parser.add_argument("--warm-start", type=float, default=LIVE_SAMPLING.warm_start_strength,
                        help="streaming warm-start strength, fraction of the steps re-run per frame "
                             f"(default {LIVE_SAMPLING.warm_start_strength})")
    parser.add_argument("--precisions", type=_names,
                        help=f"streaming precisions to compare, of {','.join(PRECISIONS)} (default: fp32 on a CPU, "
                             "all on CUDA)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the channels-last variant (default: on CUDA only)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the torch.compile variant (default: on CUDA only; minutes to compile on a CPU)")
    parser.add_argument("--window-batch-sizes", type=_integers,
                        help="offline throughput at each number of windows denoised together (default: 1 on a CPU, "
                             "1,4,8 on CUDA)")
    parser.add_argument("--compile-mode", default="default", choices=[m for m in COMPILE_MODES if m != COMPILE_OFF],
                        help="torch.compile mode of the compile variant (reduce-overhead: CUDA graphs)")
    parser.add_argument("--hand-backend", default="keypoints", choices=("keypoints", "ground_truth"),
                        help="hand mesh of the streaming rows: fitted to the frame's keypoints as live (default), "
                             "or the annotated mesh (the pressure node's own cost; needs no open3d)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--stream-frames", type=int, help="measured streaming frames per setting (default 8; --quick 3)")
    parser.add_argument("--reference-steps", type=int, default=25, help="full-step DDIM reference of the quality check")
    parser.add_argument("--quality-sequences", type=int, help="held-out sequences scored (default 3; --quick 1)")
    parser.add_argument("--quality-frames", type=int, help="frames per held-out sequence (default 48; --quick 24)")
    parser.add_argument("--quality-streaming-steps", type=_integers,
                        help="step counts of the headline scheduler whose streaming quality is scored (default: the headline's)")
    parser.add_argument("--streaming-reference", action="store_true",
                        help="also score the reference setting streamed from noise every frame: the causal yardstick "
                             "of the streaming rows (reference-steps U-Net passes per frame: slow on a CPU)")
    parser.add_argument("--no-quality", action="store_true", help="skip the quality check")
    parser.add_argument("--no-profile", action="store_true", help="skip the operator profile of the U-Net forward")
    parser.add_argument("--data", help="held-out data folder (generated there if missing; default: a temporary one)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=(256, 256),
                        help="camera image size of generated held-out data (default 256 256)")
    parser.add_argument("--quick", action="store_true", help="a small grid that runs in a few minutes on a 2-core CPU")
    parser.add_argument("--live", action="store_true",
                        help="instead: play held-out sequences at camera rate (30 Hz wall clock) into the live stream and "
                             "report output rate, latency, window restarts and quality against the offline estimate")
    parser.add_argument("--live-sequences", type=int, help=f"--live: sequences played ({LIVE_SIZE_HELP['sequences']})")
    parser.add_argument("--live-frames", type=int, help=f"--live: frames per sequence ({LIVE_SIZE_HELP['frames']})")
    parser.add_argument("--live-hands", choices=HAND_SOURCES,
                        help="--live: hand meshes added with the frames: the annotation's (default), the camera-only "
                             "path run in the camera thread (estimated), or the annotation's displaced as a fit is")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench.json", help="JSON report (default bench.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace):
    """:class:`~egopress_core.bench.BenchOptions` of the parsed command line."""
    from egopress_core.bench import BenchOptions, quick_options

    # The sampler timings need the video model; live, the default is what the pressure node runs.
    default = DEFAULT_CHECKPOINT if args.live else EGOPRESSDIFF_CHECKPOINT
    values = dict(
        checkpoint=args.checkpoint if args.checkpoint or args.config else str(default),
        config=args.config,
        device=RuntimeOptions(device=args.device).device,
        headline=args.headline,
        warm_start_strength=args.warm_start,
        channels_last=args.channels_last,
        compile=args.compile,
        compile_mode=args.compile_mode,
        hand_backend=args.hand_backend,
        threads=args.threads,
        reference_steps=args.reference_steps,
        quality=not args.no_quality,
        streaming_reference=args.streaming_reference,
        profile=not args.no_profile,
        data=args.data,
        image_size=tuple(args.image_size),
        seed=args.seed,
    )
    optional = dict(schedulers=args.schedulers, steps=args.steps, precisions=args.precisions,
                    window_batch_sizes=args.window_batch_sizes,
                    stream_frames=args.stream_frames, quality_sequences=args.quality_sequences,
                    quality_frames=args.quality_frames, quality_streaming_steps=args.quality_streaming_steps)
    values.update({key: value for key, value in optional.items() if value is not None})
    return quick_options(**values) if args.quick else BenchOptions(**values)


def run(args: argparse.Namespace) -> int:
    from egopress_core.bench import format_report, run_benchmark, write_report

    options = options_from_args(args)
    if args.live:
        import dataclasses

        from egopress_core.bench.live import LiveBenchOptions, format_live, quick_live_options, run_live_benchmark

        live = quick_live_options() if args.quick else LiveBenchOptions()
        changes = {"sequences": args.live_sequences, "frames": args.live_frames, "hands": args.live_hands}
        live = dataclasses.replace(live, **{key: value for key, value in changes.items() if value is not None})
        report = run_live_benchmark(options, live, progress=not args.no_progress)
        print(format_live(report["live"]))
        print(f"report: {write_report(report, args.out)}")
        return 0
    report = run_benchmark(options, progress=not args.no_progress)
    print(format_report(report))
    print(f"report: {write_report(report, args.out)}")
    return 0
