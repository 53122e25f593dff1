"""``medrecon simulate STUDY -o DIR``: simulated sparse-view sinograms or undersampled multi-coil
k-space of a study, saved with the acquisition record (:mod:`medrecon.simulation`). Also the
acquisition flags ``medrecon reconstruct`` shares (:func:`add_acquisition`, :func:`acquisition_options`)."""

from __future__ import annotations

from .arguments import add_modality, options_from, positive_int

HELP = ("simulate sparse-view CT sinograms or undersampled multi-coil k-space from a study, saved with their "
        "acquisition record")


def add_acquisition(parser) -> None:
    """The flags that describe a simulated acquisition (``simulate`` and ``reconstruct``)."""
    add_modality(parser)
    parser.add_argument("--slices", default=None, metavar="START:STOP", help="a range of slices (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise, phase and sampling (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ct = parser.add_argument_group("CT acquisition")
    ct.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    ct.add_argument("--views", type=positive_int, default=23, help="number of views (default: %(default)s)")
    ct.add_argument("--convention", choices=["uniform", "song"], default="uniform", help="parallel-beam view set")
    ct.add_argument("--noise", choices=["none", "gaussian", "poisson"], default="none", help="CT noise model")
    ct.add_argument("--noise-rel", type=float, default=0.01, help="gaussian: std / sinogram max (default: %(default)s)")
    ct.add_argument("--photons", type=float, default=1e5, help="poisson: incident photons (default: %(default)g)")
    mr = parser.add_argument_group("MR acquisition")
    mr.add_argument("--accel", type=float, default=4.0, help="acceleration (default: %(default)s)")
    mr.add_argument("--mask", default="equispaced_fraction",
                    help="equispaced, equispaced_fraction, random, gaussian1d, gaussian2d, poisson or radial (default: %(default)s)")
    mr.add_argument("--center-fraction", type=float, default=None, help="fully sampled centre (default: fastMRI's)")
    mr.add_argument("--trajectory", choices=["cartesian", "radial", "spiral"], default="cartesian",
                    help="cartesian: a --mask at --accel; radial / spiral: non-Cartesian k-space through a NUFFT (default: %(default)s)")
    mr.add_argument("--spokes", type=positive_int, default=48, help="radial: spokes (default: %(default)s; Nyquist is pi N / 2)")
    mr.add_argument("--angles", choices=["golden", "uniform"], default="golden", help="radial: spoke angles (default: %(default)s)")
    mr.add_argument("--interleaves", type=positive_int, default=16, help="spiral: interleaves (default: %(default)s)")
    mr.add_argument("--undersampling", type=float, default=4.0,
                    help="spiral: radial undersampling factor R of the variable-density design (default: %(default)s)")
    mr.add_argument("--coils", type=positive_int, default=8, help="simulated coils (default: %(default)s)")
    mr.add_argument("--noise-sigma", type=float, default=0.0, help="k-space noise std on the [0, 1] image")
    mr.add_argument("--no-phase", action="store_true", help="keep the image real (no smooth phase)")


def acquisition_options(args):
    """The :class:`~medrecon.acquisition.AcquisitionOptions` the flags ask for."""
    from medrecon.acquisition import AcquisitionOptions  # torch, only when running

    return options_from(AcquisitionOptions, args, smooth_phase=not args.no_phase)


def add_arguments(parser) -> None:
    parser.add_argument("input", help="a study: DICOM folder, .nii/.nii.gz or .nrrd")
    parser.add_argument("-o", "--out", required=True, help="output folder (acquisition.json + the measurements)")
    add_acquisition(parser)


def run(args) -> int:
    from medrecon.inputs import load_input_study  # torch, only when running
    from medrecon.outputs import check_output_folder
    from medrecon.simulation import simulate_study

    check_output_folder(args.out, args.overwrite, input_path=args.input)  # before any work
    study = load_input_study(args.input, modality=args.modality, slices=args.slices)
    print(simulate_study(study, acquisition_options(args), args.out, overwrite=args.overwrite))
    return 0
