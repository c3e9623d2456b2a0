"""The run page's parts that need no training: UI addresses, the dataset record, the experiment kind."""

import mlflow

from contrastlab.datamodules.vision import Digits
from contrastlab.platform.runpage import KIND_TAG, MODEL_TRAINING, dataset_record, mark_model_training
from contrastlab.platform.ui import page_url


def test_ui_addresses_open_the_model_training_view():
    assert page_url("http://h:5000/") == "http://h:5000/#/experiments?workflowType=machine_learning"
    assert (
        page_url("http://h:5000", "3", "abc") == "http://h:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    # sorted by a metric, as MLflow's UI writes its sort into the address (and lists every run as a row of its own)
    assert page_url("http://h:5000", "3", sort_by=("objective/val/knn_top1", False)) == (
        "http://h:5000/#/experiments/3/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60objective%2Fval%2Fknn_top1%60&orderByAsc=false"
    )


def test_the_dataset_record_names_the_data_its_source_shape_and_split_sizes():
    data = Digits(batch_size=32)
    data.setup("fit")
    record = dataset_record(data)
    assert record["name"] == "digits" and len(record["digest"]) == 16
    assert '"train": 1257' in record["profile"] and '"shape": [1, 8, 8]' in record["schema"]
    data.setup("test")  # another split read: another record
    assert dataset_record(data)["digest"] != record["digest"]


def test_an_experiment_kind_someone_chose_is_kept(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    ours = client.create_experiment("ours", artifact_location=(tmp_path / "a").as_uri())
    theirs = client.create_experiment("theirs", artifact_location=(tmp_path / "b").as_uri())
    client.set_experiment_tag(theirs, KIND_TAG, "genai_development")
    for experiment in (ours, theirs):
        mark_model_training(client, experiment)
    assert client.get_experiment(ours).tags[KIND_TAG] == MODEL_TRAINING
    assert client.get_experiment(theirs).tags[KIND_TAG] == "genai_development"
