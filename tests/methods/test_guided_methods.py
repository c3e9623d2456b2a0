"""CACR and G-SimCLR through the CLI, as a user runs them: a CACR mistake as one line (G-SimCLR's clustering under
2-process DDP is tests/methods/test_ddp_methods.py's). Their losses are tested in
tests/modules/test_guided_losses.py, the pseudo-labels in tests/modules/test_clusters.py, a few steps of each digits
config in test_every_method.py; how well they learn is benchmarks/methods.py's job."""

from __future__ import annotations

from tests.conftest import in_process_store, the_error_line
from tests.methods.conftest import method_config


def test_a_cacr_mistake_is_one_line(tmp_path, cli_here):
    """The keys' other refusals are unit-tested in tests/modules/test_clusters.py."""
    args = ["fit", "-c", str(method_config("cacr")), "--model.init_args.augment.init_args.num_views", "1"]
    line = the_error_line(*cli_here(*args, *in_process_store(tmp_path), cwd=tmp_path))
    assert "model.augment.init_args.num_views=1: CACR contrasts views of each sample; give at least 2" in line
