"""`egopress convert-mano`: official (chumpy-based) MANO pickle -> plain NumPy pickle."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-mano",
        help="convert an official MANO .pkl into a plain NumPy pickle (no chumpy needed)",
        description=(
            "Read an official MANO model (MANO_RIGHT.pkl / MANO_LEFT.pkl, whose arrays are chumpy "
            "objects that do not load on current NumPy) without installing chumpy, and write a "
            "plain NumPy/SciPy pickle with the same keys that smplx, manopth and egopress load. "
            "The hand model also reads the official files directly; converting once makes "
            "loading faster and serves other tools."
        ),
    )
    parser.add_argument("input", help="official MANO .pkl")
    parser.add_argument("output", help="converted .pkl to write")
    parser.add_argument(
        "--right-reference",
        metavar="MANO_RIGHT.pkl",
        help=(
            "when converting MANO_LEFT.pkl: the right model of the same release. If the left "
            "model's shapedirs carry the right hand's x components unmirrored (a known defect of "
            "the official left model, vchoutas/smplx#48), they are negated"
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.hand.mano_io import convert_mano_pickle

    summary = convert_mano_pickle(args.input, args.output, right_reference=args.right_reference)
    source = "chumpy-based" if summary["was_chumpy"] else "plain"
    print(f"converted {source} MANO model {args.input} ({summary['num_vertices']} vertices) -> {args.output}")
    if summary["fixed_left_shapedirs"]:
        print("negated the x components of shapedirs (left model carried the right model's)")
    return 0
