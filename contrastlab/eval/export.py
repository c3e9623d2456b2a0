"""`contrastlab eval --register NAME`: the evaluated encoder into the MLflow Model Registry."""

from __future__ import annotations

import copy

import torch

from contrastlab.eval.targets import Target
from contrastlab.evaluation.features import RawEncoder
from contrastlab.platform import tracking


def register(model, target: Target, name: str, uri: str, client, example) -> str:
    """Log `RawEncoder(model)` to the run and register it as `name`; returns the new version.

    The encoder is saved as a torch.export program (`pt2`: a graph and weights, no pickled code), traced
    on `example` (a few raw samples) with a free batch size; a model that torch.export cannot trace is
    pickled instead, and the command says so.
    """
    import mlflow

    encoder = RawEncoder(copy.deepcopy(model).cpu())
    versions = tracking.package_versions()
    requirements = [f"{pkg}=={versions[pkg]}" for pkg in ("torch", "lightning", "timm", "kornia") if pkg in versions]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    example = torch.as_tensor(example).cpu()
    try:
        with mlflow.start_run(run_id=target.run_id):
            try:
                info = mlflow.pytorch.log_model(
                    encoder,
                    name="encoder",
                    serialization_format="pt2",
                    input_example=example.numpy(),
                    registered_model_name=name,
                    pip_requirements=requirements,
                )
            except Exception as err:  # torch.export cannot trace every model
                print(f"torch.export failed ({type(err).__name__}); the encoder is pickled instead", flush=True)
                info = mlflow.pytorch.log_model(
                    encoder,
                    name="encoder",
                    serialization_format="pickle",
                    registered_model_name=name,
                    pip_requirements=requirements,
                )
    finally:
        # start_run marks the run RUNNING and then FINISHED: give it back the status it had.
        client.update_run(target.run_id, status=target.status)
    return str(info.registered_model_version)
