"""The entry point of the ``scvi-diffusion`` command: parse the arguments, run the command, and
turn bad input into a one-line message with exit status 2."""

from __future__ import annotations

from ._messages import _plain_messages
from ._parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scvi-diffusion`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _plain_messages():
            return args.func(args)
    except (ValueError, TypeError, OSError) as error:
        # bad input (or a file that cannot be read or written) gets its message, not a
        # traceback; exit status 2 as for usage errors
        parser.exit(2, f"scvi-diffusion {args.command}: error: {error}\n")
