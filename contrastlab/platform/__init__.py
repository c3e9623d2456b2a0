"""The runner: CLI, MLflow tracking, checkpoints and callbacks. Imports methods and data, never the reverse."""
