"""Batched augmentations: nn.Modules that turn one raw batch into V views on the batch's device.

`ops.py` holds the ops any pipeline may use (which samples an op applies to, per-sample and per-view parameters,
crops, gain, the per-channel normalisation, the spectrogram ops). Each modality has one view-pipeline file, holding
its own ops and its pipelines: `vision.py` (images), `medical.py` (grey 2-D medical images), `volume.py` (3-D
volumes), `audio.py` (waveforms, log-mel spectrograms), `series.py` (time series), `sequence.py` (light views of any
(B, C, T) sequence, audio or series), `text.py` (a sentence of each paired text). They subclass
`contrastlab.contract.ViewPipeline`.

One rule for a method's own views (SimCLR's and BYOL's image recipes, CLMR's chain, TS-TCC's weak and strong views,
CPC's light view): they live in their modality's pipeline file, beside the pipeline they specialise, never in a file
named after the method. An augmentation knows no files: nothing here imports `contrastlab.datamodules`.
"""
