"""The end of a sweep command: the parent run's summary, and the best trial printed with where to browse it."""

from __future__ import annotations

from contrastlab.platform import tracking
from contrastlab.platform.stores import redact, sqlite_path
from contrastlab.platform.ui import UI_BASE, page_url
from contrastlab.sweeps.config import SweepConfig
from contrastlab.sweeps.report import mean_sd, ties
from contrastlab.sweeps.runs import ROLE_TAG, objective_metric
from contrastlab.sweeps.storage import JOURNAL_PREFIX, RUN_ATTR

DEFAULT_TRACKING = f"{tracking.SQLITE_PREFIX}{tracking.DEFAULT_STORE_DIR}/mlflow.db"


def _summarise(client, parent: str, study, config: SweepConfig, still_running: int):
    from contrastlab.sweeps.report import write_summary

    best = write_summary(client, parent, study, config)
    if not still_running:  # other machines' workers may still be at it
        client.set_terminated(parent, status="FINISHED")
    return best


def trials_url(base: str, experiment_id: str | None, metric: str, direction: str) -> str:
    """The sweep's runs table sorted by the objective that complete trials carry: every trial a row, best first."""
    return page_url(base, experiment_id, sort_by=(objective_metric(metric), direction == "minimize"))


def sweep_pages(uri: str, base: str, newest: int = 5) -> list[str]:
    """For `contrastlab ui`: a line per sweep in the store (the newest first), naming its trials' page."""
    from contrastlab.sweeps.runs import client_for

    try:
        client = client_for(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(
            experiments, f"tags.`{ROLE_TAG}` = 'parent'", order_by=["attributes.start_time DESC"], max_results=newest
        )
    except Exception:  # the UI serves the store anyway, and says what is wrong with it
        return []
    lines = []
    for parent in parents:
        metric, _, direction = parent.data.tags.get("sweep.objective", "").rpartition(" (")
        if metric:
            url = trials_url(base, parent.info.experiment_id, metric, direction.rstrip(")"))
            lines.append(
                f"  sweep {client.get_experiment(parent.info.experiment_id).name!r}, its trials best first: {url}"
            )
    return lines


def dashboard_command(storage_url: str) -> str:
    """optuna-dashboard over the sweep's storage (it takes a journal file by path and storage class)."""
    if storage_url.startswith(JOURNAL_PREFIX):
        return f"optuna-dashboard {storage_url[len(JOURNAL_PREFIX) :]} --storage-class JournalFileStorage"
    return f"optuna-dashboard {redact(storage_url)}"


def _print_best(
    best,
    config: SweepConfig,
    tracking_uri: str,
    storage_url: str,
    experiment_id: str | None = None,
    parent: str = "",
    tied: list[int] = (),
) -> None:
    if best is None:
        print(f"sweep {config.name!r}: no trial completed yet")
        return
    params = "\n".join(f"  {k} = {v}" for k, v in best.params.items())
    default = sqlite_path(tracking_uri) == sqlite_path(DEFAULT_TRACKING).absolute()
    trials = trials_url(UI_BASE, experiment_id, config.metric, config.direction)
    store = "" if default else f" --tracking-uri {redact(tracking_uri)}"
    print(
        f"best trial {best.number}: {config.metric} = {mean_sd(best)}{ties(list(tied))}"
        f" (MLflow run {best.user_attrs.get(RUN_ATTR)})\n"
        f"{params}\n"
        f"best config: the parent run's artifact best_config.yaml; trials table: trials.md\n"
        f"browse it: contrastlab ui{store}  (then open {trials}: its trials, best first; the parent run:"
        f" {page_url(UI_BASE, experiment_id, parent or None)})\n"
        f"study dashboard: {dashboard_command(storage_url)}",
        flush=True,
    )
