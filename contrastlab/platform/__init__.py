"""The run: CLI, MLflow tracking, checkpoints and callbacks. Imports methods, data and evaluation; nothing below it
imports it, and it imports neither sweeps nor eval (they import it)."""
