"""`egopress hand-preview`: PNG of a hand model in a few poses, its UV atlas and a UV map on it."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hand-preview",
        help="render a hand model in several poses with its UV atlas to a PNG",
        description=(
            "Render the hand model (default: the bundled hand) flat, relaxed, as a fist, pointing "
            "and pinching, from the back and the palm side, plus its UV atlas, a test UV map and "
            "that map painted onto the mesh."
        ),
    )
    parser.add_argument("--out", required=True, help="PNG to write (e.g. docs/hand_preview.png)")
    parser.add_argument("--hand-model", help="MANO-format .pkl (default: the bundled hand)")
    parser.add_argument("--uv-obj", help="UV atlas OBJ (default: the model's sidecar), e.g. MANO_UV_right.obj")
    parser.add_argument("--side", default="right", choices=("right", "left"), help="hand side (default right)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from egopress_core.hand.hand_model import load_hand_model
    from egopress_core.hand.preview import make_hand_preview

    hand = load_hand_model(side=args.side, model_path=args.hand_model, uv_obj_path=args.uv_obj)
    path = make_hand_preview(hand, args.out)
    print(f"wrote {path}")
    return 0
