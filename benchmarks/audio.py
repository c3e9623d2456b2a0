"""Audio: CLMR's chain batched vs per sample vs torch-audiomentations, and CLMR on FSDD next to MFCC + 1-NN.

    .venv/bin/python benchmarks/audio.py chain [--batch 64] [--seconds 1.0] [--rate 16000]
    .venv/bin/python benchmarks/audio.py fsdd [--split official|speakers|both] [--epochs 4] [--encoder logmel]

`chain` (one run, samples per second of one view, the ratio to ours batched): each op of CLMR's chain and the whole
chain, (1) ours, one call on the batch; (2) ours, the same ops called on one sample at a time (a Python loop,
as a per-sample CPU pipeline does); (3) torch-audiomentations 0.12 where it has the op (no delay; its reverb is
`ApplyImpulseResponse`, which reads impulse-response files through `torchaudio.info`, gone from torchaudio 2.9+, so
it does not run here), each op at probability 1 (the chain at CLMR's probabilities, without delay and reverb on
their side). Random noise as input: the ops' cost does not depend on it.

`fsdd` (skipped when ../shared/data/fsdd is absent): on the official split (takes 0-4 of every speaker are test)
and on a speaker-independent split (train on george, jackson, lucas, nicolas; test on theo and yweweler), (a) MFCC
mean and std (20 coefficients, librosa's defaults, from our log-mel front end on the unpadded clips) with 1-NN,
computed here; (b) a SampleCNN at random init and (c) after CLMR pretraining (SimCLR with CLMR's chain), each
evaluated frozen by weighted kNN (k=1, 20) and a logistic probe (L2 chosen on the validation split).
`--encoder logmel`: SimCLR on `LogMelViews` (the waveform chain, then log-mel, SpecAugment and log-mixup) with a
small 2-D CNN instead of CLMR's SampleCNN on waveforms.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from contrastlab.augment import audio as A

FSDD_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
SPEAKER_TEST = ["theo", "yweweler"]


# -- the chain --------------------------------------------------------------------------------------


def timed(fn, repeats: int = 3) -> float:
    """Best CPU time of this process over `repeats` calls, after one warm-up call. CPU time, not wall time: the
    machine is shared, and with one torch thread CPU seconds are what an idle core would take."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return max(best, 1e-6)


def ours_ops(rate: int) -> dict[str, torch.nn.Module]:
    return {
        "polarity": A.PolarityInversion(1.0),
        "noise": A.Noise(1.0),
        "gain": A.Gain(1.0),
        "high/low-pass": A.HighLowPass(rate, 1.0),
        "delay": A.Delay(rate, 1.0),
        "pitch shift": A.PitchShift(rate, 1.0),
        "reverb": A.Reverb(rate, 1.0),
    }


def their_ops(rate: int) -> dict[str, torch.nn.Module]:
    import torch_audiomentations as T

    common = {"p": 1.0, "sample_rate": rate, "output_type": "tensor"}
    return {
        "polarity": T.PolarityInversion(**common),
        "noise": T.AddColoredNoise(min_snr_in_db=20, max_snr_in_db=40, min_f_decay=0, max_f_decay=0, **common),
        "gain": T.Gain(min_gain_in_db=-20, max_gain_in_db=-1, **common),
        "high/low-pass": T.OneOf(
            [
                T.HighPassFilter(min_cutoff_freq=200, max_cutoff_freq=1200, **common),
                T.LowPassFilter(min_cutoff_freq=2200, max_cutoff_freq=4000, **common),
            ],
            output_type="tensor",
        ),
        "pitch shift": T.PitchShift(min_transpose_semitones=-7, max_transpose_semitones=7, **common),
    }


def their_chain(rate: int):
    import torch_audiomentations as T

    ops = their_ops(rate)
    probabilities = {"polarity": 0.8, "noise": 0.01, "gain": 0.3, "high/low-pass": 0.8, "pitch shift": 0.6}
    for name, p in probabilities.items():
        ops[name].p = p
        for inner in getattr(ops[name], "transforms", []):
            inner.p = 1.0
    return T.Compose(list(ops.values()), output_type="tensor")


def chain_benchmark(batch: int, seconds: float, rate: int, their_batch: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(batch, 1, int(seconds * rate)) * 0.1
    small = x[:their_batch]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = ours_ops(rate), their_ops(rate)
        ours["chain (CLMR's p)"] = A.CLMRViews(sample_rate=rate).chain
        theirs["chain (CLMR's p)"] = their_chain(rate)
        for name, op in ours.items():
            batched = batch / timed(lambda op=op: op(x))
            looped = their_batch / timed(lambda op=op: [op(small[i : i + 1]) for i in range(their_batch)])
            row = [name, batched, looped, None]
            if name in theirs:
                row[3] = their_batch / timed(lambda their=theirs[name]: their(small, sample_rate=rate))
            rows.append(row)
            print(f"  {name}: done", flush=True)
    print(f"\nCLMR's chain on {batch} x {seconds:g} s at {rate} Hz (per-sample columns on {their_batch} samples), ")
    cpu = platform.processor() or platform.machine()
    print(f"samples per CPU-second of one view, one torch thread, {os.cpu_count()}-core {cpu} (shared)\n")
    print("| op | ours, batched | ours, per sample (loop) | torch-audiomentations | batched / loop | batched / t-a |")
    print("|---|---|---|---|---|---|")
    for name, batched, looped, their in rows:
        their_s = f"{their:,.0f}" if their else "no such op"
        ratio = f"{batched / their:,.1f}x" if their else "-"
        print(f"| {name} | {batched:,.0f} | {looped:,.0f} | {their_s} | {batched / looped:,.1f}x | {ratio} |")


# -- FSDD ---------------------------------------------------------------------------------------------


def mfcc_stats(paths: list[Path], rate: int = 8000) -> torch.Tensor:
    """(N, 40): mean and std over frames of 20 MFCCs (librosa.feature.mfcc's defaults: n_fft 2048, hop 512,
    128 mels, dB with top_db 80, orthonormal DCT-II), from our log-mel front end on each whole clip."""
    import soundfile as sf
    from scipy.fft import dct

    front = A.LogMel(rate, n_fft=2048, hop_length=512, n_mels=128, top_db=80.0)
    out = []
    for path in paths:
        wave, file_rate = sf.read(str(path), dtype="float32")
        assert file_rate == rate, path
        db = front(torch.from_numpy(wave).view(1, 1, -1))[0, 0].numpy()
        mfcc = dct(db, type=2, norm="ortho", axis=0)[:20]
        out.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return torch.tensor(np.stack(out), dtype=torch.float32)


def one_nn(train_x, train_y, test_x, test_y) -> float:
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    distances = torch.cdist((test_x - mean) / std, (train_x - mean) / std)
    return float((train_y[distances.argmin(dim=1)] == test_y).float().mean())


def frozen_scores(model, data) -> dict[str, float]:
    from contrastlab.evaluation.features import extract_features
    from contrastlab.evaluation.protocols import knn_grid, linear_probe

    feats = {s: extract_features(model, data.eval_loader(s), "cpu") for s in ("train", "val", "test")}
    tr, va, te = feats["train"], feats["val"], feats["test"]
    knn = knn_grid(tr["features"], tr["y"], te["features"], te["y"], 10, ks=(1, 20))
    probe = linear_probe(tr["features"], tr["y"], va["features"], va["y"], te["features"], te["y"], 10)
    return {"knn k=1": knn["top1_k1"], "knn k=20": knn["top1_k20"], "linear": probe.metrics["top1"]}


class EpochClock:
    """Prints each epoch's mean loss and the CPU time so far."""

    def __new__(cls):
        import lightning as L

        class Clock(L.Callback):
            def on_train_epoch_end(self, trainer, module):
                loss = float(trainer.callback_metrics.get("train/loss_epoch", float("nan")))
                print(f"  epoch {trainer.current_epoch}: loss {loss:.3f} (CPU {time.process_time():.0f} s)", flush=True)

        return Clock()


def fsdd_benchmark(
    split: str, epochs: int, batch: int, widths: list[int], crop: float, workers: int, encoder: str
) -> None:
    import lightning as L

    from contrastlab.datamodules.audio import FSDD
    from contrastlab.modules import SimCLR
    from contrastlab.modules.core.optim import OptimizerConfig

    L.seed_everything(0, verbose=False)
    torch.set_num_threads(1)  # a shared machine: two threads spin-wait on each other when one is descheduled
    test_speakers = SPEAKER_TEST if split == "speakers" else None
    data = FSDD(root=str(FSDD_ROOT), duration=1.0, batch_size=batch, num_workers=workers, test_speakers=test_speakers)
    start = time.perf_counter()
    train_paths = [c.path for c in data.split("train").clips]
    test_paths = [c.path for c in data.split("test").clips]
    train_y = torch.tensor(data.split("train").labels)
    test_y = torch.tensor(data.split("test").labels)
    mfcc = one_nn(mfcc_stats(train_paths), train_y, mfcc_stats(test_paths), test_y)
    mfcc_s = time.perf_counter() - start
    print(f"  MFCC + 1-NN: {mfcc:.3f} (CPU {time.process_time():.0f} s so far)", flush=True)

    def model():
        if encoder == "logmel":  # SimCLR on log-mel views (the same waveform chain first) with a small 2-D CNN
            net, kwargs = "small_cnn", {"widths": [32, 64, 128], "convs_per_stage": 1}
            views = A.LogMelViews(crop_seconds=crop, n_mels=64, hop_length=128)
        else:
            net, kwargs, views = "samplecnn", {"widths": widths}, A.CLMRViews(crop_seconds=crop)
        return SimCLR(
            backbone=net, backbone_kwargs=kwargs, temperature=0.2, proj_hidden_dim=256, proj_dim=64, augment=views,
            data_info=data.info, optimizer=OptimizerConfig(name="adamw", lr=0.002, weight_decay=1e-4, warmup_epochs=1),
        )  # fmt: skip

    random_init = frozen_scores(model(), data)
    print(f"  random init: {random_init} (CPU {time.process_time():.0f} s so far)", flush=True)
    clmr = model()
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[EpochClock()],
        )  # fmt: skip
        trainer.fit(clmr, data)
    train_s = time.process_time() - start
    print(f"  trained, {train_s:.0f} CPU s", flush=True)
    trained = frozen_scores(clmr, data)
    sizes = {s: len(data.split(s)) for s in ("train", "val", "test")}
    where = (
        "official (takes 0-4 test)" if split == "official" else f"speaker-independent (test: {', '.join(SPEAKER_TEST)})"
    )
    print(f"\nFSDD, {where}; train/val/test {sizes['train']}/{sizes['val']}/{sizes['test']}")
    setup = f"views {crop:g} s of 1 s at 8 kHz, batch {batch}, {epochs} epochs ({train_s:.0f} CPU s, one thread)"
    name = "small CNN (32-64-128) on log-mel views" if encoder == "logmel" else f"SampleCNN widths {widths}"
    print(f"{name}, {setup}\n")
    print("| features | kNN k=1 | kNN k=20 | linear probe |")
    print("|---|---|---|---|")
    print(f"| MFCC mean+std, 1-NN (standardised, {mfcc_s:.0f} s) | {mfcc:.3f} | - | - |")
    short = "log-mel CNN" if encoder == "logmel" else "SampleCNN"
    method = "SimCLR" if encoder == "logmel" else "CLMR"
    for name, s in ((f"{short}, random init", random_init), (f"{short}, {method} {epochs} epochs", trained)):
        print(f"| {name} | {s['knn k=1']:.3f} | {s['knn k=20']:.3f} | {s['linear']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["chain", "fsdd", "all"])
    parser.add_argument("--batch", type=int, default=64, help="chain: batch; fsdd: training batch (default 64)")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--their-batch", type=int, default=8, help="samples for the per-sample columns")
    parser.add_argument("--split", choices=["official", "speakers", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 16, 32, 32, 64, 64, 64, 128, 128])
    parser.add_argument("--crop", type=float, default=0.8)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--encoder", choices=["samplecnn", "logmel"], default="samplecnn")
    args = parser.parse_args()
    if args.part in ("chain", "all"):
        chain_benchmark(args.batch, args.seconds, args.rate, args.their_batch)
    if args.part in ("fsdd", "all"):
        if not FSDD_ROOT.is_dir():
            print(f"FSDD not found at {FSDD_ROOT}: skipped")
            return
        for split in ("official", "speakers") if args.split == "both" else (args.split,):
            fsdd_benchmark(split, args.epochs, args.batch, args.widths, args.crop, args.workers, args.encoder)


if __name__ == "__main__":
    main()
