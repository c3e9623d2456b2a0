"""Every local backbone, one file per kind of data: vision.py (2-D, beside timm's), audio.py, series.py, cpc.py,
ts2vec.py and tstcc.py (1-D), volume.py (3-D), text.py (the text towers of paired methods).

Each file registers its nets with `@register_backbone(name, dims=...)` (registry.py); importing this package
imports every file in it, so a config can name any of them and a new file needs no edit elsewhere. A net knows
no method: nothing here imports the rest of contrastlab.modules.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
