"""``tunelab leaderboard DIR [DIR ...] --output-dir OUT`` (report/leaderboard.py)."""

from ..errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="merge several compare folders (any task families) into one method x task "
                                           "matrix: leaderboard.md + leaderboard.html",
                       description="Read the results.sqlite of each compare folder and write one method x task matrix "
                                   "(each task's main metric in its own direction, and relative to full fine-tuning), "
                                   "the mean rank, the Friedman test and Nemenyi's critical difference to "
                                   "OUTPUT_DIR/leaderboard.md and the self-contained OUTPUT_DIR/leaderboard.html.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="compare output folders (each holds results.sqlite)")
    p.add_argument("--output-dir", required=True, help="where leaderboard.md / leaderboard.html go")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(ns) -> int:
    from .leaderboard import write_leaderboard

    if not ns.output_dir:
        raise UserError("leaderboard: --output-dir is empty")
    md, html = write_leaderboard(ns.dirs, ns.output_dir)
    print(f"leaderboard: {md} {html}")
    return 0
