"""`contrastlab eval`: a trained run's encoder evaluated offline, the results logged into its MLflow run.

cli.py is the verb (options in args.py); targets.py finds the checkpoint, its run and config, and rebuilds the
model and data through the run CLI; run.py evaluates one checkpoint with the protocols of contrastlab.evaluation;
report.py writes its results into the run, export.py into the Model Registry; table.py evaluates many runs
into one table. It sits beside sweeps/, above platform/: it imports the run's machinery, nothing imports it but
the dispatcher (contrastlab/cli.py).
"""
