"""Disease mapping of the Scottish lip cancer data: the README's demo
===================================================================

The BYM2 model of the 56 Scottish districts (Poisson counts, a spatially structured ICAR effect and an unstructured
one, the covariate AFF), fitted with the Laplace method (INLA-style integration over σ and ρ), summarised with ArviZ
and drawn as a map of the posterior mean relative risks. The model, its priors and the other fitting methods (SVI with
:class:`sparseprec.pyro.AutoSparseMultivariateNormal`, NUTS) are described in :mod:`sparseprec.examples.lip_cancer`;
this script runs its command line::

    python -m sparseprec.examples.lip_cancer            # what this page runs
    python -m sparseprec.examples.lip_cancer --help     # SVI, NUTS, islands, ...
    python examples/lip_cancer_demo.py --quick          # fewer posterior draws (for tests)
"""

import argparse

from sparseprec.examples import lip_cancer


def main() -> None:
    parser = argparse.ArgumentParser(description="The lip cancer demo (Laplace), as the gallery runs it.")
    parser.add_argument("--quick", action="store_true", help="500 posterior draws instead of 2000")
    parser.add_argument("--output", default="lip_cancer.png")
    args = parser.parse_args()
    lip_cancer.main(["--output", args.output, "--quiet", *(["--samples", "500"] if args.quick else [])])


if __name__ == "__main__":
    main()
