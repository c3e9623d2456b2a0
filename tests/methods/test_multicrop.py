"""Multi-crop through the CLI: methods that cannot take views of several sizes, or GradCache, refuse them in one
line, as does SwAV with fewer prototypes than embedding dimensions. SwAV and DINO train under 2-process DDP with their
shipped digits configs (2 global + 4 local crops) in tests/methods/test_ddp_methods.py."""

from __future__ import annotations

from tests.conftest import DIGITS_CONFIG, in_process_store, the_error_line
from tests.methods.conftest import method_config

LOCAL_CROPS = [
    "--model.init_args.augment.init_args.local_crops",
    "2",
    "--model.init_args.augment.init_args.local_size",
    "6",
]


def test_a_method_of_one_view_size_refuses_local_crops_in_one_line(tmp_path, cli_here):
    args = ["fit", "-c", str(DIGITS_CONFIG), *LOCAL_CROPS, *in_process_store(tmp_path)]
    line = the_error_line(*cli_here(*args, cwd=tmp_path))
    assert "model.augment: SimCLR takes views of one size" in line and "2 local of (1, 6, 6)" in line


def test_grad_cache_refuses_multi_crop_in_one_line(tmp_path, cli_here):
    args = ["fit", "-c", str(DIGITS_CONFIG), *LOCAL_CROPS, "--model.init_args.grad_cache_chunk", "16"]
    line = the_error_line(*cli_here(*args, *in_process_store(tmp_path), cwd=tmp_path))
    assert "model.init_args.grad_cache_chunk: GradCache encodes views of one size" in line and "multi-crop" in line


def test_swav_with_fewer_prototypes_than_embedding_dimensions_is_one_line(tmp_path, cli_here):
    """Its digits config once had 100 prototypes for 128 dimensions: the embeddings left the prototypes' span,
    every score went to 0 and the loss sat at log 100 while kNN fell from 0.93 to 0.66."""
    args = ["fit", "-c", str(method_config("swav")), "--model.init_args.num_prototypes", "100"]
    line = the_error_line(
        *cli_here(*args, "--model.init_args.proj_dim", "128", *in_process_store(tmp_path), cwd=tmp_path)
    )
    assert "model.init_args.num_prototypes=100 is below proj_dim=128" in line and "num_prototypes >= proj_dim" in line
