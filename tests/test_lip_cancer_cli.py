"""The demo's command line: every argument is checked before any work (status 2 and a message naming the option, the
expected and the actual), and a fit whose ELBO becomes non-finite stops with an error instead of reporting a
posterior. Bad arguments never reach the data or the fit (both are replaced by tripwires here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sparseprec.examples import lip_cancer

pytestmark = pytest.mark.examples


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command gets as far as loading the data or fitting."""

    def tripwire(*args, **kwargs):
        raise AssertionError("the command started working before refusing its arguments")

    monkeypatch.setattr(lip_cancer, "load_scotland_lip_cancer", tripwire)
    monkeypatch.setattr(lip_cancer, "fit_svi", tripwire)
    monkeypatch.setattr(lip_cancer, "fit_laplace", tripwire)


BAD = [
    (["--lr", "-1"], r"argument --lr: expected a positive finite number, got '-1'"),
    (["--lr", "0"], r"argument --lr: expected a positive finite number, got '0'"),
    (["--lr", "1e-400"], r"argument --lr: expected a positive finite number, got '1e-400'"),  # rounds to 0
    (["--lr", "nan"], r"argument --lr: expected a positive finite number, got 'nan'"),
    (["--lr", "inf"], r"argument --lr: expected a positive finite number, got 'inf'"),
    (["--lr", "fast"], r"argument --lr: expected a positive finite number, got 'fast'"),
    (["--steps", "0"], r"argument --steps: expected an integer >= 1, got 0"),
    (["--steps", "-5"], r"argument --steps: expected an integer >= 1, got -5"),
    (["--steps", "1.5"], r"argument --steps: expected an integer >= 1, got '1.5'"),
    (["--particles", "0"], r"argument --particles: expected an integer >= 1, got 0"),
    (["--samples", "0"], r"argument --samples: expected an integer >= 1, got 0"),
    (["--nuts-samples", "1"], r"argument --nuts-samples: expected an integer >= 2, got 1"),
    (["--nuts-warmup", "-1"], r"argument --nuts-warmup: expected an integer >= 0, got -1"),
    (["--nuts-chains", "1"], r"argument --nuts-chains: expected an integer >= 2, got 1"),
    (["--seed", "-1"], r"argument --seed: expected an integer in \[0, 2\*\*32\), got -1"),
    (["--seed", str(2**32)], r"argument --seed: expected an integer in \[0, 2\*\*32\), got 4294967296"),
    (["--output", "map.txt"], r"argument --output: expected a path ending in \.png, got 'map\.txt'"),
    (["--method", "mcmc"], r"argument --method: invalid choice: 'mcmc' \(choose from '?laplace'?, '?svi'?, '?nuts'?\)"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(argv) for argv, _ in BAD])
def test_bad_arguments_exit_with_status_2_before_any_work(argv, message, no_work, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli([*argv, "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m sparseprec.examples.lip_cancer")
    assert re.search(message, err), err


def test_an_output_in_a_missing_directory_is_refused_before_any_work(tmp_path, no_work, capsys):
    target = tmp_path / "missing" / "map.png"
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli(["--output", str(target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --output: the directory of '{target}' ('{target.parent}') does not exist" in err


def test_an_output_that_is_a_directory_is_refused(tmp_path, no_work, capsys):
    directory = tmp_path / "figure.png"
    directory.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli(["--output", str(directory)])
    assert exit_info.value.code == 2
    assert f"argument --output: expected a file path, got the directory '{directory}'" in capsys.readouterr().err


def test_an_output_in_an_unwritable_directory_is_refused(tmp_path, monkeypatch, no_work, capsys):
    # permissions cannot be relied on (tests may run as root), so the access check itself reports "not writable"
    monkeypatch.setattr(lip_cancer, "_writable", lambda path: False)
    target = tmp_path / "map.png"
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli(["--output", str(target)])
    assert exit_info.value.code == 2
    assert f"the directory of '{target}' ('{tmp_path}') is not writable" in capsys.readouterr().err


def test_the_default_output_is_checked_too_unless_no_plot(tmp_path, monkeypatch, no_work, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lip_cancer, "_writable", lambda path: False)
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli([])
    assert exit_info.value.code == 2
    assert "argument --output: the directory of 'lip_cancer.png' ('.') is not writable" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="started working"):  # with --no-plot the default path is not needed
        lip_cancer.cli(["--no-plot"])


def test_good_arguments_parse_to_their_values(tmp_path):
    argv = ["--lr", "1e-3", "--steps", "7", "--particles", "2", "--samples", "3", "--nuts-samples", "2",
            "--nuts-warmup", "0", "--nuts-chains", "3", "--seed", "4294967295",
            "--output", str(tmp_path / "a.PNG")]  # fmt: skip
    args = lip_cancer.build_parser().parse_args(argv)
    assert (args.lr, args.steps, args.particles, args.samples) == (1e-3, 7, 2, 3)
    assert (args.nuts_samples, args.nuts_warmup, args.nuts_chains) == (2, 0, 3)
    assert (args.seed, args.output) == (2**32 - 1, tmp_path / "a.PNG")
    defaults = lip_cancer.build_parser().parse_args([])
    assert (defaults.lr, defaults.steps, defaults.output) == (0.02, 3000, Path("lip_cancer.png"))
    assert (defaults.nuts_samples, defaults.nuts_warmup, defaults.nuts_chains) == (500, 500, 2)


def test_the_module_command_refuses_a_negative_learning_rate_at_once():
    command = [sys.executable, "-m", "sparseprec.examples.lip_cancer", "--lr", "-1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "argument --lr: expected a positive finite number, got '-1'" in result.stderr
    assert result.stdout == ""  # nothing loaded, nothing fitted, no posterior


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, r"lr must be a positive finite number, got -1\.0"),
        ({"lr": float("nan")}, r"lr must be a positive finite number, got nan"),
        ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"particles": 2.5}, r"particles must be an integer >= 1, got 2\.5"),
    ],
)
def test_fit_svi_refuses_bad_settings_before_fitting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lip_cancer.fit_svi(lambda: None, None, **kwargs)


def test_sampling_functions_refuse_bad_counts():
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1, got 0"):
        lip_cancer.svi_samples(lambda: None, None, 0)
    with pytest.raises(ValueError, match=r"warmup must be an integer >= 0, got -1"):
        lip_cancer.run_nuts(lambda: None, None, num_samples=10, warmup=-1)
    with pytest.raises(ValueError, match=r"chains must be an integer >= 1, got 0"):
        lip_cancer.run_nuts(lambda: None, None, num_samples=10, warmup=5, chains=0)
    with pytest.raises(ValueError, match=r"num_samples must be an integer >= 1, got 0"):
        lip_cancer.laplace_samples(None, 0)


DIVERGING = [
    "--method",
    "svi",
    "--lr",
    "1000",
    "--steps",
    "5",
    "--particles",
    "1",
    "--samples",
    "10",
    "--no-plot",
    "--quiet",
]


@pytest.mark.filterwarnings("ignore:Encountered NaN:UserWarning")  # Pyro's own notice on the way to the error
def test_a_diverging_fit_stops_with_an_error_instead_of_a_posterior(capsys):
    data = lip_cancer.load_scotland_lip_cancer()
    with pytest.raises(FloatingPointError, match=r"SVI diverged: .* became non-finite at step \d+ of 5 .*--lr"):
        lip_cancer.fit_svi(lip_cancer.bym2_model(data), data, steps=5, lr=1000.0, particles=1, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        lip_cancer.cli(DIVERGING)
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "error: SVI diverged" in captured.err
    assert "Posterior summary" not in captured.out
