"""The built-in protocols of `contrastlab eval`, one file each (see evaluation/registry.py), registered in
this order: the order of `--protocols`' default and of its help."""

import importlib

BUILTIN = ("knn", "linear", "svm", "finetune", "auroc")
for _name in BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")
