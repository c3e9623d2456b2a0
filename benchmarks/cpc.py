"""CPC, wav2vec 2.0 and speaker embeddings: the shipped configs' encoders after pretraining vs the same encoders at
random init.

    .venv/bin/python benchmarks/cpc.py [fsdd] [wav2vec2] [speakers] [ucr] [--epochs 8] [--speaker-epochs 3]
                                   [--width 64] [--ucr-epochs 150]

`fsdd` (skipped when ../shared/data/fsdd is absent): configs/cpc/fsdd.yaml on FSDD's official split (takes 0-4 of
every speaker are test), with a narrower encoder (`--width` channels for the convs and the GRU) and `--epochs`
epochs so that it fits a few CPU minutes. The frozen encoder, pooled three ways (mean context: the config's; the
last context; the mean latent), is evaluated for the spoken digit (weighted kNN k=1 and k=20, logistic probe with
L2 chosen on the validation split) and, with the same features, for the speaker (closed-set identification among
the 6 speakers), next to MFCC mean/std + 1-NN (benchmarks/audio.py's baseline).

`wav2vec2` (skipped without FSDD): configs/wav2vec2/fsdd.yaml on the same split, as shipped, `--epochs` epochs, its
encoder's mean unmasked context evaluated for the digit and the speaker as CPC's is, against its random init.

`speakers` (skipped without FSDD): configs/supcon/fsdd_speakers.yaml (SupCon over same-speaker positives with an
additive margin) with the same narrower encoder, against its random init: speaker kNN and probe on FSDDSpeakers.

`ucr`: configs/cpc/ucr.yaml on GunPoint (ships with aeon): kNN and probe of the pretrained vs random-init encoder,
with the raw series' 1-NN beside (.913 in ../shared/data/README.md).

Every model and its data are built from the shipped config by the CLI's own parser, then trained with a plain
Trainer in this process (one torch thread: a shared machine); seconds are this process's CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FSDD_ROOT = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
sys.path.insert(0, str(REPO / "benchmarks"))
PARTS = ["fsdd", "wav2vec2", "speakers", "ucr"]
POOLS = {"context": "mean context", "last": "last context", "latent": "mean latent"}


def build(config: str, *overrides: str):
    """The model and DataModule of configs/<config>.yaml with `overrides`, as `contrastlab fit -c` builds them."""
    from contrastlab.platform.cli import ContrastlabCLI

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    argv = sys.argv
    sys.argv = ["contrastlab"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cli = BuildOnly(run=False, args=["-c", str(REPO / "configs" / f"{config}.yaml"), *overrides])
    finally:
        sys.argv = argv
    return cli.model, cli.datamodule


def train(model, data, epochs: int) -> float:
    """`epochs` epochs without validation; returns the CPU seconds they took."""
    import lightning as L

    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, data)
    loss = float(trainer.callback_metrics.get("train/loss_epoch", float("nan")))
    print(f"  trained {epochs} epochs: last loss {loss:.3f}, {time.process_time() - start:.0f} CPU s", flush=True)
    return time.process_time() - start


def features(model, data) -> dict[str, dict[str, torch.Tensor]]:
    """Frozen features of train, val and test, with each sample's class `y` and `group`."""
    from contrastlab.evaluation.features import extract_features

    out = {}
    for split in ("train", "val", "test"):
        feats = extract_features(model, data.eval_loader(split), "cpu")
        groups = getattr(data.split(split), "groups", None)
        if groups is not None:
            feats["group"] = torch.tensor(groups)[feats["idx"]]
        out[split] = feats
    return out


def scores(feats, key: str, classes: int) -> dict[str, float]:
    from contrastlab.evaluation.protocols import knn_grid, linear_probe

    tr, va, te = (feats[s] for s in ("train", "val", "test"))
    knn = knn_grid(tr["features"], tr[key], te["features"], te[key], classes, ks=(1, 20))
    probe = linear_probe(tr["features"], tr[key], va["features"], va[key], te["features"], te[key], classes)
    return {"knn k=1": knn["top1_k1"], "knn k=20": knn["top1_k20"], "linear": probe.metrics["top1"]}


def table(title: str, rows: list[tuple[str, dict[str, float] | float]]) -> None:
    print(f"\n{title}\n\n| features | kNN k=1 | kNN k=20 | linear probe |\n|---|---|---|---|")
    for name, s in rows:
        if isinstance(s, float):
            print(f"| {name} | {s:.3f} | - | - |")
        else:
            print(f"| {name} | {s['knn k=1']:.3f} | {s['knn k=20']:.3f} | {s['linear']:.3f} |")


def narrow(width: int) -> list[str]:
    return ["--model.init_args.backbone_kwargs", f"{{strides: [5, 4, 2, 2, 2], width: {width}, context_dim: {width}}}"]


def mfcc_baselines(data) -> dict[str, float]:
    """MFCC mean/std + 1-NN on the test split, for the digit and for the speaker (benchmarks/audio.py's features)."""
    import audio as audio_bench

    train, test = data.split("train"), data.split("test")
    train_x = audio_bench.mfcc_stats([c.path for c in train.clips])
    test_x = audio_bench.mfcc_stats([c.path for c in test.clips])
    return {
        key: audio_bench.one_nn(train_x, torch.tensor(getattr(train, attr)), test_x, torch.tensor(getattr(test, attr)))
        for key, attr in (("digit", "labels"), ("speaker", "groups"))
    }


def fsdd(epochs: int, width: int) -> None:
    import lightning as L

    L.seed_everything(0, verbose=False)
    random_model, data = build("cpc/fsdd", *narrow(width), "--data.init_args.root", str(FSDD_ROOT))
    mfcc = mfcc_baselines(data)
    random_feats = features(random_model, data)
    L.seed_everything(0, verbose=False)
    model, data = build("cpc/fsdd", *narrow(width), "--data.init_args.root", str(FSDD_ROOT))
    seconds = train(model, data, epochs)
    trained = {}
    for pool in POOLS:  # the same trained encoder, read three ways (the config reads "context")
        model.backbone.pool = pool
        trained[pool] = features(model, data)
    sizes = "/".join(str(len(data.split(s))) for s in ("train", "val", "test"))
    setup = f"CPC encoder width {width}, {epochs} epochs of configs/cpc/fsdd.yaml ({seconds:.0f} CPU s, one thread)"
    for key, label, classes in (("y", "digit", 10), ("group", "speaker", 6)):
        table(
            f"FSDD official split ({sizes}), the {label}; {setup}",
            [
                (f"MFCC mean+std, 1-NN ({label})", mfcc[label]),
                ("CPC encoder, random init, mean context", scores(random_feats, key, classes)),
                *[(f"CPC encoder, CPC {epochs} epochs, {POOLS[p]}", scores(trained[p], key, classes)) for p in POOLS],
            ],
        )


def wav2vec2(epochs: int) -> None:
    import lightning as L

    root = ["--data.init_args.root", str(FSDD_ROOT)]
    L.seed_everything(0, verbose=False)
    random_model, data = build("wav2vec2/fsdd", *root)
    random_feats = features(random_model, data)
    L.seed_everything(0, verbose=False)
    model, data = build("wav2vec2/fsdd", *root)
    seconds = train(model, data, epochs)
    trained = features(model, data)
    setup = f"{epochs} epochs of configs/wav2vec2/fsdd.yaml ({seconds:.0f} CPU s, one thread)"
    for key, label, classes in (("y", "digit", 10), ("group", "speaker", 6)):
        table(
            f"FSDD official split, the {label}; {setup}",
            [
                ("wav2vec 2.0 encoder, random init, mean context", scores(random_feats, key, classes)),
                (f"wav2vec 2.0 encoder, {epochs} epochs, mean context", scores(trained, key, classes)),
            ],
        )


def speakers(epochs: int, width: int) -> None:
    import lightning as L

    root = ["--data.init_args.root", str(FSDD_ROOT)]
    L.seed_everything(0, verbose=False)
    random_model, data = build("supcon/fsdd_speakers", *narrow(width), *root)
    random_feats = features(random_model, data)
    L.seed_everything(0, verbose=False)
    model, data = build("supcon/fsdd_speakers", *narrow(width), *root)
    seconds = train(model, data, epochs)
    setup = f"encoder width {width}, {epochs} epochs ({seconds:.0f} CPU s, one thread)"
    table(
        f"FSDD speaker identification (6 speakers, official split), configs/supcon/fsdd_speakers.yaml; {setup}",
        [
            ("CPC encoder, random init", scores(random_feats, "y", 6)),
            (f"SupCon, same-speaker positives, margin 0.2, {epochs} epochs", scores(features(model, data), "y", 6)),
        ],
    )


def ucr(epochs: int) -> None:
    import lightning as L

    L.seed_everything(0, verbose=False)
    random_model, data = build("cpc/ucr")
    random_feats = features(random_model, data)
    L.seed_everything(0, verbose=False)
    model, data = build("cpc/ucr")
    seconds = train(model, data, epochs)
    classes = data.info.num_classes
    table(
        f"GunPoint (train 50, test 150; val reads test), configs/cpc/ucr.yaml, {epochs} epochs ({seconds:.0f} CPU s)",
        [
            ("CPC encoder, random init", scores(random_feats, "y", classes)),
            (f"CPC encoder, CPC {epochs} epochs", scores(features(model, data), "y", classes)),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", choices=PARTS, default=PARTS)
    parser.add_argument("--epochs", type=int, default=8, help="CPC's and wav2vec 2.0's epochs on FSDD")
    parser.add_argument("--speaker-epochs", type=int, default=3, help="SupCon epochs on FSDD's speakers")
    parser.add_argument("--width", type=int, default=64, help="conv and GRU width on FSDD (the config: 128)")
    parser.add_argument("--ucr-epochs", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for part in args.parts:
        start = time.process_time()
        if part != "ucr" and not FSDD_ROOT.is_dir():
            print(f"{part}: FSDD not found at {FSDD_ROOT}: skipped")
            continue
        if part == "fsdd":
            fsdd(args.epochs, args.width)
        elif part == "wav2vec2":
            wav2vec2(args.epochs)
        elif part == "speakers":
            speakers(args.speaker_epochs, args.width)
        else:
            ucr(args.ucr_epochs)
        print(f"\n{part}: {time.process_time() - start:.0f} CPU s in all", flush=True)


if __name__ == "__main__":
    main()
