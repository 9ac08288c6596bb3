"""``vpp sweep``: accuracy vs speed of dense, VPP at several PKRs and random drop on a labelled clip or split.

    vpp sweep INPUT --gt GT [--pkr 1.0 0.7 0.55 0.4 0.3] [--no-random] --json out.json [--csv out.csv]
              [--plot out.png] [--model M] [--device cpu] [--threads N]

INPUT: a folder of frames or a video file (``--gt`` a YouTube-VIS GT JSON or a DAVIS PNG folder), or a YTVIS
split folder (``instances.json`` + ``JPEGImages/``; ``--gt`` defaults to its ``instances.json``). The figures
come from :func:`core.sweep.sweep`, the code path of the app's sweep panel; see there for the schema and how
sparse ground truth is scored. Outputs are checked before the model runs and never overwrite an input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import int_range, pkr_value
from core.errors import DataError, VPPError


def add_parser(sub) -> None:
    from core.sweep import DEFAULT_PKRS

    p = sub.add_parser("sweep", help="PKR sweep: AP_track, mAP and ms/frame of dense, VPP and random drop")
    p.add_argument("input", help="a folder of frames, a video file or a YouTube-VIS split folder")
    p.add_argument("--gt", default=None,
                   help="ground truth: a YouTube-VIS GT JSON or a folder of DAVIS PNG masks (category 1, scored "
                        "class-agnostically); for a split, default its instances.json")
    p.add_argument("--pkr", nargs="+", type=pkr_value, default=list(DEFAULT_PKRS),
                   help="PKRs in (0, 1] (default 1.0 0.7 0.55 0.4 0.3; 1.0 is the dense row)")
    rnd = p.add_mutually_exclusive_group()
    rnd.add_argument("--random", dest="random", action="store_true", default=True,
                     help="also run the random-drop baseline at every PKR < 1 (the default)")
    rnd.add_argument("--no-random", dest="random", action="store_false", help="skip the random-drop baseline")
    p.add_argument("--json", dest="json_out", required=True, help="write the sweep (schema vpp-sweep/1) here")
    p.add_argument("--csv", dest="csv_out", default=None, help="also write the table as CSV")
    p.add_argument("--plot", dest="plot_out", default=None, help="also draw AP_track vs ms/frame and GFLOPs as PNG")
    p.add_argument("--model", default=None, help="model file (default: the embedded default model)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (speed is measured there)")
    p.add_argument("--threads", type=int_range(1, 1024), default=None,
                   help="torch intra-op threads, 1..1024 (default: torch's)")
    p.add_argument("--score-threshold", type=pkr_value, default=None, help="instance score threshold in (0, 1]")
    p.set_defaults(func=run)


def _outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    outs = [("--json", Path(args.json_out))]
    if args.csv_out:
        outs.append(("--csv", Path(args.csv_out)))
    if args.plot_out:
        outs.append(("--plot", Path(args.plot_out)))
    return outs


def _inputs(args: argparse.Namespace) -> list[Path]:
    inputs = [Path(args.input)]
    if args.gt:
        inputs.append(Path(args.gt))
    if args.model:
        inputs.append(Path(args.model))
    split = Path(args.input)
    if (split / "instances.json").is_file():
        inputs += [split / "instances.json", split / "JPEGImages"]
    return inputs


def check_sweep_outputs(args: argparse.Namespace) -> None:
    """Every output a writable file name, none an input or another output (before the model loads)."""
    from core.export import check_outputs

    outs = _outputs(args)
    seen: dict[Path, str] = {}
    for opt, path in outs:
        key = path.resolve()
        if key in seen:
            raise DataError(f"{path}: given to both {seen[key]} and {opt}; choose a different name for each")
        seen[key] = opt
        # core.export's checks for one file output: a file name in a writable folder, not a link, not an input
        check_outputs({"ytvis": path}, inputs=_inputs(args))


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from core.atomic import atomic_write_text
    from core.resources import load_model
    from core.sweep import configurations, sweep
    from core.sweep_plot import plot_sweep

    inp = Path(args.input)
    if not inp.exists():
        raise DataError(f"{inp}: input not found (expected a folder of frames, a video file or a YTVIS split)")
    if args.gt is not None and not Path(args.gt).exists():
        raise DataError(f"{args.gt}: ground truth not found (expected a YouTube-VIS GT JSON or a DAVIS PNG folder)")
    configurations(args.pkr, args.random)  # a bad PKR list fails before anything runs
    check_sweep_outputs(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device="cpu")
    if not loaded.trained:
        print("warning: no trained default model is shipped; the figures come from an untrained model",
              file=sys.stderr)
    bar = tqdm(total=0, desc="sweep", unit="frame", file=sys.stderr)
    try:
        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        result = sweep(inp, args.gt, model=loaded, pkrs=args.pkr, random_baseline=args.random,
                       device=args.device, progress=progress, score_threshold=args.score_threshold)
    finally:
        bar.close()
    try:
        atomic_write_text(args.json_out, result.to_json())
        if args.csv_out:
            atomic_write_text(args.csv_out, result.to_csv())
    except OSError as exc:
        raise VPPError(f"{exc.filename or args.json_out}: cannot write the sweep ({exc.strerror or exc})") from exc
    if args.plot_out:
        plot_sweep(result, args.plot_out)
    print(f"{'config':<12}{'PKR':>6}{'kept':>7}{'ms/frame':>10}{'GFLOPs':>9}{'AP_track':>10}{'AP50':>7}"
          f"{'mAP_segm':>10}   ({result.device})")
    for r in result.rows:
        s = r.summary()
        print(f"{r.name:<12}{r.pkr:>6.2f}{r.keep_ratio:>7.3f}{r.ms_per_frame:>10.1f}{r.gflops_per_frame:>9.2f}"
              f"{s['AP_track']:>10.3f}{s['AP50']:>7.3f}{s['mAP_segm']:>10.3f}")
    print(f"wrote {args.json_out}" + (f", {args.csv_out}" if args.csv_out else "")
          + (f", {args.plot_out}" if args.plot_out else ""))
    return 0
