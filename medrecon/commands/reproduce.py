"""``medrecon reproduce lidc|brats|fastmri|starter``: a published table's protocol on your copy of
the data (:func:`medrecon.reproduce.run.reproduce`), or the starter protocol on the starter corpus
(:func:`medrecon.reproduce.starter.reproduce_starter`)."""

from __future__ import annotations

from pathlib import Path

from medrecon.errors import InputError
from medrecon.samplers.registry import sampler_names

from .arguments import add_device, check_device, positive_int

HELP = ("regenerate a published table (LIDC-IDRI, BraTS, fastMRI) on your copy of the data: every sampler "
        "next to the classical baselines, written as CSV, Markdown, JSON and a PNG figure")


def add_arguments(parser) -> None:
    parser.add_argument(
        "protocol", choices=["lidc", "brats", "fastmri", "starter"],
        help="the published table: lidc (Song et al., sparse-view CT), brats (Song et al., single-coil MRI), "
        "fastmri (DDS / fastMRI, multi-coil MRI, target RSS), starter (the starter corpus)",
    )
    parser.add_argument("--data", metavar="PATH", help="the dataset's root folder, in its published layout "
                        "(starter: the starter corpus folder; default medrecon data fetch's)")
    parser.add_argument("--prior", metavar="NAME_OR_PATH", help="a prior of the data's modality and image size")
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR",
                        help="new folder for results.csv, summary.md, summary.json and figure.png")
    default = ",".join(sampler_names(prior="pixel", slice_wise=True))
    parser.add_argument("--samplers", default=default, help="comma-separated samplers (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: each sampler's preset)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="VOLUMES", help="the first VOLUMES volumes (default: all)")
    parser.add_argument("--slices", default=None, metavar="K", help="K slices per volume, evenly spaced, or all (default: all)")
    parser.add_argument("--views", default=None, help="lidc: comma-separated view counts (default: 10,20,23)")
    parser.add_argument("--accel", default=None, help="brats/fastmri: comma-separated accelerations (default: brats 4,8,24; fastmri 4,8)")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="lidc: slice side (default: 320); brats: grid the volume's box is placed on (default: the prior's size)")
    parser.add_argument("--sequence", choices=["t1", "t1ce", "t2", "flair"], default=None, help="brats: the MR sequence (default: t2)")
    add_device(parser)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="slices per network call (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTDIR")
    parser.add_argument("--quiet", action="store_true", help="no step-level progress line (the per-result lines stay)")


def parse_list(text, what: str, *, kind=int) -> list | None:
    """``"10,20,23"`` -> ``[10, 20, 23]`` (None stays None); a bad item is an :class:`InputError`."""
    if text is None:
        return None
    items = [str(t) for t in text] if isinstance(text, (list, tuple)) else [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise InputError(f"{what} takes a comma-separated list, got {text!r}")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise InputError(f"{what} takes a comma-separated list of {kind.__name__}s, got {text!r}") from None


def slices_per_volume(text) -> int | None:
    """``--slices``: a positive count, or None for ``all`` / not given."""
    if text is None or str(text).lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--slices takes a positive number of slices per volume or 'all', got {text!r}") from None
    if value < 1:
        raise InputError(f"--slices must be >= 1, got {value}")
    return value


def run(args, *, prior=None, stream=None) -> int:
    """The command. ``prior``: a loaded prior to use instead of ``--prior`` (tests inject an analytic
    denoiser this way). ``stream``: where the progress lines go (stderr)."""
    samplers = parse_list(args.samplers, "--samplers", kind=str)
    device = None if check_device(args.device) in (None, "auto") else args.device
    if args.protocol == "starter":
        from medrecon.reproduce.starter import reproduce_starter  # torch, only when running

        reproduce_starter(args.out, samplers=samplers, starter=args.data, slices=slices_per_volume(args.slices) or 8,
                          steps=args.steps, device=device, batch_size=args.batch_size, seed=args.seed,
                          overwrite=args.overwrite, command=getattr(args, "command_line", "medrecon reproduce starter"))
        return 0
    from medrecon.reproduce.protocols import make_protocol
    from medrecon.reproduce.run import reproduce

    protocol_options = {}
    if args.size is not None:
        if args.protocol == "fastmri":
            raise InputError("--size applies to lidc and brats; fastMRI reconstructs on the k-space grid")
        protocol_options["size"] = args.size
    if args.sequence is not None:
        if args.protocol != "brats":
            raise InputError("--sequence applies to brats only")
        protocol_options["sequence"] = args.sequence
    protocol = make_protocol(args.protocol, **protocol_options)
    views, accel = parse_list(args.views, "--views"), parse_list(args.accel, "--accel")
    if protocol.value_name == "views" and accel is not None:
        raise InputError(f"--accel applies to MRI protocols, not {protocol.name} (use --views)")
    if protocol.value_name == "accel" and views is not None:
        raise InputError(f"--views applies to CT protocols, not {protocol.name} (use --accel)")
    if args.data is None:
        raise InputError(f"reproduce {protocol.name} needs --data (the dataset's root folder)")
    if prior is None and not args.prior:
        raise InputError(f"reproduce {protocol.name} needs --prior (a {protocol.modality} prior name or folder)")
    from medrecon import distributed

    # under torchrun every process scores its share of the volumes; process 0 writes the tables
    owned = distributed.init_if_launched(distributed.rank_device(device) if distributed.launched() else device)
    try:
        summary = reproduce(
            protocol, args.data, prior if prior is not None else args.prior, args.out,
            samplers=samplers, steps=args.steps, limit=args.limit, slices=slices_per_volume(args.slices),
            values=views if protocol.value_name == "views" else accel, device=device, batch_size=args.batch_size,
            seed=args.seed, overwrite=args.overwrite, progress=False if args.quiet else None, stream=stream,
            command=getattr(args, "command_line", None),
        )
    finally:
        distributed.destroy(owned)
    if summary is None:  # a torchrun process other than 0
        return 0
    out = Path(args.out)
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'}, {out / 'summary.json'}, {out / 'figure.png'} "
          f"({summary['n_volumes']} volume(s), {len(summary['settings'])} setting(s), {len(summary['methods'])} method(s))")
    return 0
