"""Local backbones by kind of data, one file each (1-D nets for audio and series, 3-D nets for volumes).

Each file registers its nets with `@register_backbone(name, dims=...)`; importing this package imports
every file in it, so a config can name any of them and a new file needs no edit elsewhere.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
