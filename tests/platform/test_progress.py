"""Progress a person can watch: a fit on a terminal draws Lightning's bar with an ETA, with the one-line summaries
above it; a fit whose output is a log writes the summaries alone; a setting of `trainer.enable_progress_bar` in the
config or on the command line wins over both."""

from __future__ import annotations

import re

import pytest

from tests.conftest import DIGITS_CONFIG, in_process_store, run_on_terminal

# One epoch of three small steps, validated: the bars a fit draws, in a few seconds.
TINY = [
    "--trainer.max_epochs", "1",
    "--data.init_args.max_train_samples", "96",
    "--data.init_args.batch_size", "32",
    "--trainer.check_val_every_n_epoch", "1",
    "--tracking.system_metrics_interval", "0",
    "--tracking.log_checkpoints", "false",
    "--model.init_args.proj_hidden_dim", "64",
]  # fmt: skip
BAR = re.compile(r"Epoch 0: +\d+%\|[^|\r\n]*\| \d+/3 \[\d\d:\d\d<\d\d:\d\d")  # elapsed<remaining: the ETA
# the whole line, up to its end: a bar drawn over it would cut it, or run on from it
SUMMARY = re.compile(r"epoch 0 step 3 \| val/knn_top1 [\d.]+ \| val/probe_acc [\d.]+ \| val/effective_rank [\d.]+\r?\n")


def test_a_fit_on_a_terminal_draws_a_bar_with_an_eta_under_its_summaries(tmp_path):
    proc = run_on_terminal("fit", "-c", str(DIGITS_CONFIG), *TINY, cwd=tmp_path)
    shown = proc.stdout
    assert proc.returncode == 0, shown[-3000:]
    assert BAR.search(shown), shown[-3000:]
    assert "Testing DataLoader 0: 100%" in shown  # the test phase after fit has its bar too
    assert SUMMARY.search(shown), shown[-3000:]
    assert re.search(r"(?:^|\n)run [0-9a-f]{32} in experiment 'digits'", shown), shown[-3000:]


def test_a_fit_written_to_a_log_from_a_terminal_writes_the_summaries_alone(tmp_path):
    log = tmp_path / "fit.log"
    proc = run_on_terminal(
        "fit", "-c", str(DIGITS_CONFIG), *TINY, "--test_after_fit", "false", cwd=tmp_path, stdout=log
    )
    written = proc.stderr  # the log's text; the terminal holds stderr
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "\r" not in written and "Epoch 0" not in written and "it/s" not in written, written[-3000:]
    assert "it/s" not in proc.stdout and "Epoch 0" not in proc.stdout  # nor on the terminal, through stderr
    assert SUMMARY.search(written) and "browse it: contrastlab ui" in written, written


@pytest.mark.parametrize("terminal, setting", [(False, "true"), (True, "false")])
def test_a_setting_on_the_line_or_in_the_config_wins_over_the_terminal(
    terminal, setting, tmp_path, cli_here, monkeypatch
):
    """In this process, and validating nothing: what is decided is the point, the bars are the tests' above."""
    from contrastlab.platform import cli

    built = []
    instantiate = cli.ContrastlabCLI.instantiate_trainer
    monkeypatch.setattr(cli, "on_terminal", lambda: terminal)
    monkeypatch.setattr(
        cli.ContrastlabCLI, "instantiate_trainer", lambda s, **kw: built.append(instantiate(s, **kw)) or built[-1]
    )
    args = ["-c", str(DIGITS_CONFIG), "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", setting]
    code, err = cli_here("validate", *args, *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert (built[0].progress_bar_callback is not None) is (setting == "true")
