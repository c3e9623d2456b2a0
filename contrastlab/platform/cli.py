"""The run: LightningCLI's verbs (fit, validate, test, predict) tracked in MLflow.

Every key of a YAML config can be overridden on the command line (`--model.temperature 0.5`), and
`--print_config` shows the resolved config. A run goes to the embedded MLflow store unless
`--tracking-uri` (or MLFLOW_TRACKING_URI) names another; `--resume` continues a run from its last
checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from contrastlab.datamodules.base import ContrastiveDataModule
from contrastlab.errors import CheckpointError, ConfigError
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.platform import checkpoints, precision, stores, tracking
from contrastlab.platform.callbacks import (
    DivergenceGuard,
    EmbeddingsWriter,
    EpochSummary,
    MLflowSaveConfig,
    RunCheckpoint,
    SystemMetrics,
    mlflow_logger,
)
from contrastlab.platform.compose import BASE_ENTRY, config_files, dropped_dict_keys, expand_bases
from contrastlab.platform.exits import user_error_exit
from contrastlab.platform.preemption import Preempted, Preemption
from contrastlab.platform.resume import AtomicCheckpointIO, ExactResume
from contrastlab.platform.runpage import RunPage
from contrastlab.platform.terminal import on_terminal
from contrastlab.platform.ui import UI_BASE, page_url
from contrastlab.platform.warm_ranks import fork_ranks_from_warm_server

log = logging.getLogger("contrastlab")
DESCRIPTION = (
    "Contrastive and self-supervised representation learning, tracked in MLflow. "
    "Verbs: fit, validate, test, predict (each takes -c CONFIG and any --key value override) and "
    "`contrastlab sweep -c SWEEP_CONFIG` (an Optuna study whose trials are runs), "
    "`contrastlab eval --run RUN_ID` (offline kNN, linear, SVM, fine-tuning, AUROC into the run) and "
    "`contrastlab ui` (the MLflow UI over the runs' store). Example: "
    "contrastlab fit -c configs/simclr/digits.yaml --trainer.max_epochs 5"
)
TRAINER_DEFAULTS = {"log_every_n_steps": 10, "num_sanity_val_steps": 0}


class ContrastlabArgumentParser(LightningArgumentParser):
    """Parse errors as one line naming the key, instead of the usage text and a nested report; a config file's
    `base:` files are read before it (`expand_bases`)."""

    def parse_args(self, args=None, *rest, **kwargs):
        args = expand_bases(list(sys.argv[1:] if args is None else args))
        parsed = super().parse_args(args, *rest, **kwargs)
        for note in dropped_dict_keys(config_files(args), parsed):
            log.warning(note)
        return parsed

    def parse_string(self, content: str, *rest, **kwargs):
        return super().parse_string(BASE_ENTRY.sub("", content), *rest, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse probing alternatives internally
            return super().error(message, ex)
        prog = self.prog.replace(" [options]", "")
        raise ConfigError(f"{condense_parse_error(message)} (see `{prog} --help`)") from ex


def condense_parse_error(message: str) -> str:
    """jsonargparse's multi-line report as one line, without the alternatives that did not apply."""
    noise = (
        "Does not validate against any of the Union subtypes",
        "Subtypes:",
        "Errors:",
        "Given value",
        "Expected a <class 'NoneType'>",
    )
    kept = [line.strip().lstrip("- ") for line in message.splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith(noise)]
    return " ".join(kept)


class ContrastlabCLI(LightningCLI):
    def __init__(self, **kwargs):
        super().__init__(
            ContrastiveModule,
            ContrastiveDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=MLflowSaveConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            parser_kwargs={"default_env": False},
            auto_configure_optimizers=False,
            parser_class=ContrastlabArgumentParser,
            trainer_class=precision.Trainer,
            **kwargs,
        )

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        main_kwargs.setdefault("description", DESCRIPTION)
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_dataclass_arguments(tracking.TrackingConfig, "tracking")
        parser.add_argument(
            "--resume",
            type=str | None,
            default=None,
            help="continue a run: 'last' (newest run of the experiment), a run id, or a checkpoint path",
        )
        parser.add_argument(
            "--resume_allow_changes",
            type=bool,
            default=False,
            help="let --resume change hyper-parameters; the changes are recorded on the run",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, evaluate on the test split and log test/* metrics to the run",
        )
        parser.link_arguments("data.info", "model.init_args.data_info", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """What `--ckpt_path` means before the model is built.

        Lightning replaces the model's config by the checkpoint's hyper-parameters here. For `fit`,
        `--ckpt_path` is `--resume`: the config is what trains, and a checkpoint that disagrees with it is
        refused later (`_check_resume`), not obeyed. For validate, test and predict the checkpoint's
        hyper-parameters still build the model, read as weights only.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand or subcommand == "fit":
            return
        path = self.config[subcommand].get("ckpt_path")
        if not path or not Path(path).is_file():
            return
        hparams = checkpoints.load_weights_only(path, "--ckpt_path")
        hparams = dict(hparams.get("hyper_parameters") or {}) if isinstance(hparams, dict) else {}
        hparams.pop("_instantiator", None)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    # -- tracking set-up, once the model and data exist -------------------------------------------

    def instantiate_trainer(self, **kwargs):
        cfg = self.config_init[self.subcommand]
        tracking_cfg: tracking.TrackingConfig = cfg["tracking"]
        info = self.datamodule.info
        method = type(self.model).__name__.lower()
        experiment = tracking_cfg.experiment or info.name
        uri = tracking.resolve_uri(tracking_cfg.uri)

        point = self._resume_point(cfg, Path(tracking_cfg.checkpoint_dir), experiment, method)
        if point is not None and self.subcommand == "fit" and rank_zero_only.rank == 0:
            self._check_resume(point, uri)
        logger = tracking.RunLogger(
            experiment_name=experiment,
            run_name=tracking_cfg.run_name or tracking.default_run_name(method, info.name),
            tracking_uri=uri,
            tags=tracking.run_tags(
                method,
                info.modality,
                info.name,
                str(self.model.hparams.get("backbone")),
                {
                    # the UI's Source column: the command, not `__main__.py` (a sweep's trials say their study)
                    "mlflow.source.name": f"contrastlab {self.subcommand}",
                    **self._speed_tags(cfg["trainer"]),
                    **tracking_cfg.tags,
                },
            ),
            log_model=tracking_cfg.log_checkpoints,
            artifact_location=tracking.artifact_location(uri, experiment),
            run_id=point.run_id if point else None,
            resumed=point is not None,
            skip_logged_steps=point is not None and self.subcommand == "fit",
        )

        # The method and its data say what is evaluated and which metric picks the best checkpoint.
        evaluation = self.model.evaluators()
        monitor, mode = evaluation.monitor, evaluation.mode
        callbacks = list(cfg["trainer"].get("callbacks") or [])
        callbacks += [
            RunCheckpoint(
                tracking_cfg.checkpoint_dir,
                experiment,
                monitor,
                mode,
                method,
                every_n_steps=tracking_cfg.checkpoint_every_n_steps,
                every_minutes=tracking_cfg.checkpoint_every_minutes,
                run_id=point.run_id if point else None,
            ),
            DivergenceGuard(),
            ExactResume(),
            Preemption(),
            SystemMetrics(tracking_cfg.system_metrics_interval, uri, resumed=point is not None),
            EpochSummary(),
            RunPage(),
        ]
        if self.subcommand == "predict":
            callbacks.append(EmbeddingsWriter())
        plugins = list(cfg["trainer"].get("plugins") or [])
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        if cfg["trainer"].get("enable_progress_bar") is None:  # a setting in the config or on the line wins
            kwargs["enable_progress_bar"] = on_terminal()
        self.tracking_uri, self.experiment_name = uri, experiment
        kwargs["precision"] = self._precision(cfg["trainer"])[0]  # `auto` resolved knowing the model
        trainer = super().instantiate_trainer(logger=logger, callbacks=callbacks, plugins=plugins, **kwargs)
        fork_ranks_from_warm_server(trainer, entry="contrastlab.cli:main", main_module="contrastlab")
        return trainer

    def _precision(self, trainer_cfg) -> tuple[str, str]:
        return precision.resolve(trainer_cfg.get("precision"), trainer_cfg.get("accelerator"), self.model)

    def _speed_tags(self, trainer_cfg) -> dict[str, str]:
        """What the fast defaults chose, and why: `trainer.precision: auto` and the model's `channels_last`."""
        chosen, why = self._precision(trainer_cfg)
        tags = {"precision": f"{chosen} ({why})"}
        if hasattr(self.model, "channels_last"):
            tags["channels_last"] = str(self.model.channels_last).lower()
        return tags

    def _resume_point(self, cfg, root: Path, experiment: str, method: str) -> checkpoints.ResumePoint | None:
        """The checkpoint and run that `--resume`/`--ckpt_path` name, its path written back as `ckpt_path`.

        For fit it must be a usable checkpoint of this method; validate, test and predict log into the
        run that wrote the checkpoint when it is one of ours, and into a new run otherwise. A fit of a
        requeued SLURM job resumes the run that job checkpointed, without being told.
        """
        value = cfg.get("resume") or cfg.get("ckpt_path")
        if value and self.subcommand != "fit" and Path(str(value)).is_file():
            # evaluating a file: it must read as weights; one a contrastlab run did not write gets a new run
            ckpt = checkpoints.load_weights_only(value, "--ckpt_path")
            meta = ckpt.get(checkpoints.META_KEY) if isinstance(ckpt, dict) else None
            cfg["ckpt_path"] = str(value)
            if not meta or not meta.get("run_id"):
                return None
            point = checkpoints.ResumePoint(Path(str(value)), meta["run_id"], meta.get("method", ""))
        elif value:
            point = checkpoints.resolve_resume(str(value), root, experiment, set_aside=self.subcommand == "fit")
        else:
            point = checkpoints.requeued_job_checkpoint(root, experiment) if self.subcommand == "fit" else None
            if point is None:
                return None
            log.warning("SLURM job requeued: resuming run %s from %s", point.run_id, point.ckpt_path)
        if self.subcommand == "fit" and point.method and point.method != method:
            raise CheckpointError(
                f"{point.ckpt_path} was written by {point.method}, but this config trains "
                f"{method}: resume with that method's config or start a new run"
            )
        cfg["ckpt_path"] = str(point.ckpt_path)
        return point

    def _check_resume(self, point: checkpoints.ResumePoint, uri: str) -> None:
        """Refuse a resume that changes what is trained, before anything is written to the run.

        The run is marked RUNNING again at the first training step (`MLflowSaveConfig`), so a resume that
        stops on a mistake leaves the run as it was.
        """
        import mlflow
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient(uri)
        try:
            run = client.get_run(point.run_id)
        except MlflowException as err:
            raise CheckpointError(
                f"{point.ckpt_path} belongs to MLflow run {point.run_id}, which {stores.redact(uri)} does not "
                "hold: pass the --tracking-uri the run was logged to"
            ) from err
        config = self.config[self.subcommand]
        current = tracking.run_params(config.as_dict())
        changed = tracking.changed_params(run.data.params, current)
        option = "--resume" if config.get("resume") else "--ckpt_path"
        listing = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items())
        if changed and not self.config[self.subcommand].get("resume_allow_changes"):
            raise ConfigError(
                f"{option}: the config differs from run {point.run_id} ({listing}); resume with the "
                "run's own config, start a new run, or pass --resume_allow_changes true to record the change"
            )
        if changed:  # params are immutable in MLflow: the run keeps its first values and says what changed
            log.warning("resuming run %s with changed hyper-parameters: %s", point.run_id, listing)
            client.set_tag(point.run_id, f"contrastlab.resume_changes.{time.strftime('%Y%m%d-%H%M%S')}", listing)

    # -- after fit: evaluate on the test split and say where the run is ----------------------------

    def after_fit(self) -> None:
        if self.trainer.interrupted:
            return
        if self.config_init[self.subcommand].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        if self.trainer.is_global_zero:
            self._print_summary()

    def _print_summary(self) -> None:
        logger = mlflow_logger(self.trainer)
        metrics = self.trainer.callback_metrics
        keys = ["test/knn_top1", "test/probe_acc", "test/auroc", "val/knn_top1", "val/probe_acc", "val/auroc"]
        ckpt = self.trainer.checkpoint_callback
        monitor = getattr(ckpt, "monitor", None) or ""  # what the method's evaluators() watch, e.g. val/recall_at_1
        if monitor.startswith("val/") and monitor not in keys:
            keys[:0] = [monitor.replace("val/", "test/", 1)]
            keys.insert(4, monitor)
        shown = [k for k in keys if k in metrics]
        lines = [
            f"run {logger.run_id} in experiment '{self.experiment_name}' ({stores.redact(self.tracking_uri)})",
            *(f"  {k:<16} {float(metrics[k]):.4f}" for k in shown),
            f"  checkpoints      {ckpt.dirpath if ckpt else '-'}",
            f"browse it: contrastlab ui  (then open {page_url(UI_BASE, logger.experiment_id, logger.run_id)})",
        ]
        print("\n".join(lines), flush=True)


def _normalise_argv(argv: list[str]) -> list[str]:
    """Accept `--tracking-uri X` and a bare `--resume` (meaning `--resume last`)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--tracking-uri" or arg.startswith("--tracking-uri="):
            arg = arg.replace("--tracking-uri", "--tracking.uri", 1)
        out.append(arg)
        if arg == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("last")
    return out


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and say nothing to a user of contrastlab."""
    for message in (
        r".*overridden `on_after_batch_transfer`.*",  # augmentation on the device is the design
        r".*LeafSpec.*",
        r".*smaller than the logging interval.*",
        r".*callbacks returned in `LightningModule.configure_callbacks` will override.*",
        r".*does not have many workers.*",  # in-memory datasets are fastest without workers
        r".*when logging on epoch level in distributed setting.*",  # our epoch metrics are computed on gathered data
        r".*all_gather is deprecated.*",
        # our train loader resumes mid-epoch through the DataModule's state, which Lightning does not see
        r".*your dataloader is not resumable.*",
        r".*Checkpoint directory .* exists and is not empty.*",  # a resume writes into its run's own folder
        r".*Unable to serialize instance DataInfo.*",  # linked from data when a config is dumped: not a user key
        r".*is not supported by the model summary.*",  # bf16-mixed, the default on CPUs that run it fast
    ):
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def main(argv: list[str] | None = None) -> None:
    """The run verbs (fit, validate, test, predict); `contrastlab` itself dispatches the others (contrastlab/cli.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # for callers in Python too: see contrastlab/cli.py
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    quiet_known_warnings()
    # DDP launchers re-run sys.argv for the other ranks, so the normalised form goes there.
    sys.argv = [sys.argv[0], *_normalise_argv(argv)]
    try:
        ContrastlabCLI()
    except Preempted as stop:
        print(f"contrastlab: {stop}", file=sys.stderr, flush=True)
        raise SystemExit(0) from None
    except Exception as exc:
        code = user_error_exit(exc)
        if code is None:
            raise
        raise SystemExit(code) from None
