"""What a run shows in the MLflow UI beyond its metrics: the experiment's kind, the data as a dataset
input, a picture of samples and their views at the start, and the embedding picture at the end.

None of it knows a modality: the view pipeline draws its own views (`ViewPipeline.preview`, with a
default by sample rank in augment/), the DataModule says what the data is (`info`, `split_sizes`), and
the method embeds (`embed`). A picture that cannot be drawn is a warning, never a failed run.
"""

from __future__ import annotations

import hashlib
import json
import logging

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device

from contrastlab.contract import preview_views
from contrastlab.evaluation.plots import embedding_scatter
from contrastlab.platform.callbacks import mlflow_logger

log = logging.getLogger("contrastlab")
# MLflow 3 opens an experiment without this tag in its GenAI view; ours are model-training experiments.
KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
PREVIEW_SAMPLES = 6
EMBEDDING_SAMPLES = 2000
VIEWS_PNG, EMBEDDINGS_PNG = "views.png", "embeddings.png"


def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment as model training, unless someone chose its kind already."""
    if KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, MODEL_TRAINING)


def dataset_record(datamodule) -> dict[str, str]:
    """Name, source, digest, schema and split sizes of a DataModule's data, as MLflow's Dataset fields."""
    info = datamodule.info
    cls = type(datamodule)
    hparams = {k: v for k, v in dict(getattr(datamodule, "hparams", {}) or {}).items() if _plain(v)}
    source = {"datamodule": f"{cls.__module__}.{cls.__qualname__}", **hparams}
    schema = {"modality": info.modality, "shape": list(info.shape), "num_classes": info.num_classes}
    profile = {"splits": datamodule.split_sizes()}
    digest = hashlib.sha256(json.dumps([source, schema, profile], sort_keys=True, default=str).encode()).hexdigest()
    return {
        "name": info.name,
        "digest": digest[:16],
        "source_type": "contrastlab",
        "source": json.dumps(source, default=str),
        "schema": json.dumps(schema),
        "profile": json.dumps(profile),
    }


def _plain(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple)


def log_dataset_input(client, run_id: str, datamodule, context: str = "train") -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(**dataset_record(datamodule))
    inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
    client.log_inputs(run_id, datasets=inputs)  # MLflow's usage telemetry is off in our processes (cli.main)


def preview_batch(datamodule, count: int = PREVIEW_SAMPLES) -> dict:
    """`count` training samples spread over the split, batched by the DataModule's own collate."""
    dataset = datamodule.split("train")
    picks = torch.linspace(0, len(dataset) - 1, min(count, len(dataset))).long().unique().tolist()
    return datamodule.collate([dataset[i] for i in picks])


class RunPage(L.Callback):
    """On rank 0: the experiment's kind at first use; at the start of fit the dataset input and
    `views.png`; at its end `embeddings.png` (PCA of the validation split's embeddings)."""

    def __init__(self) -> None:
        self._marked = False

    def _logger(self, trainer: L.Trainer):
        logger = mlflow_logger(trainer)
        return logger if trainer.is_global_zero and logger is not None else None

    def _mark(self, trainer: L.Trainer) -> None:
        logger = self._logger(trainer)
        if logger is None or self._marked:
            return
        mark_model_training(logger.experiment, logger.experiment_id)
        self._marked = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn != "fit":
            self._mark(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)
        logger = self._logger(trainer)
        if logger is None or getattr(logger, "resumed", False):  # a resumed run has them from its start
            return
        client, run_id, datamodule = logger.experiment, logger.run_id, trainer.datamodule
        try:
            log_dataset_input(client, run_id, datamodule)
        except Exception as err:  # a record the store refuses must not end the training
            log.warning("no dataset input logged: %s", err)
        try:
            x = move_data_to_device(preview_batch(datamodule), pl_module.device)["x"]
            pipeline = pl_module.augment
            preview = getattr(pipeline, "preview", None)
            figure = preview(x) if preview is not None else preview_views(pipeline, x)
            client.log_figure(run_id, figure, VIEWS_PNG)
        except Exception as err:
            log.warning("no %s: %s", VIEWS_PNG, err)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = self._logger(trainer)
        if logger is None or trainer.interrupted:
            return
        try:
            features, labels = self._embed(trainer.datamodule, pl_module)
            title = f"{trainer.datamodule.info.name}: validation embedding after {trainer.current_epoch} epochs (PCA)"
            logger.experiment.log_figure(logger.run_id, embedding_scatter(features, labels, title), EMBEDDINGS_PNG)
        except Exception as err:
            log.warning("no %s: %s", EMBEDDINGS_PNG, err)

    @staticmethod
    def _embed(datamodule, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor | None]:
        was_training = pl_module.training
        pl_module.eval()
        features, labels, seen = [], [], 0
        try:
            with torch.no_grad():
                for batch in datamodule.eval_loader("val"):
                    batch = move_data_to_device(batch, pl_module.device)
                    features.append(pl_module.embed(batch).float().cpu())
                    labels.append(batch["y"].cpu())
                    seen += len(features[-1])
                    if seen >= EMBEDDING_SAMPLES:
                        break
        finally:
            pl_module.train(was_training)
        return torch.cat(features)[:EMBEDDING_SAMPLES], torch.cat(labels)[:EMBEDDING_SAMPLES]
