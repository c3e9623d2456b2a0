# `make demo` and `make test` each create .venv and install the project when missing, then run.
PY := .venv/bin/python
STAMP := .venv/.installed
# Every version `make` installs is in these two files, written by `make lock`; pyproject keeps the ranges that a
# library user installs from.
LOCK := requirements/lock.txt
HF_LOCK := requirements/hf.txt
# the installer, pinned like the rest
UV_LOCK := requirements/uv.txt
UV := .venv/uv/bin/uv

.PHONY: demo test test-fast lint bench quality lock clean

$(STAMP): pyproject.toml $(LOCK) $(HF_LOCK) $(UV_LOCK)
	test -x $(PY) || python3 -m venv .venv
	# uv installs the lock: it fetches and unpacks in parallel, under a minute here against pip's 2-3 (most of it
	# torch's CUDA wheels). It lives beside the venv's packages, in .venv/uv, as pip's own tool would.
	$(PY) -m pip install -q --disable-pip-version-check --upgrade --target .venv/uv -r $(UV_LOCK)
	# One resolve, every package pinned by the lock (torch and torchvision among them). The venv is byte-compiled:
	# left to first use, nothing would be cached where PYTHONDONTWRITEBYTECODE is set, and every process the tests
	# start would compile torch and Lightning from source again.
	$(UV) pip install -q --python $(PY) --compile-bytecode -r $(LOCK) -c $(LOCK) -e '.[dev]'
	# transformers beside the venv, for the test of a local Hugging Face text tower only: inside it, torchmetrics
	# would import it in every process the tests start. The hf lock lists it with every package it adds.
	rm -rf .venv/hf
	$(UV) pip install -q --python $(PY) --no-deps --target .venv/hf -r $(HF_LOCK)
	touch $(STAMP)

# The lock, anew from pyproject's ranges in a fresh venv (a few minutes): commit what it writes.
lock:
	rm -rf build/lock-venv
	python3 -m venv build/lock-venv
	build/lock-venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
	build/lock-venv/bin/python tools/lock.py build/lock-venv
	rm -rf build/lock-venv

# A small SimCLR sweep on digits, two trials at a time; rerunning it resumes the study.
demo: $(STAMP)
	.venv/bin/contrastlab sweep -c configs/sweeps/simclr_digits.yaml --workers 2

# -rs: every skip with its reason; tests/test_skips.py fails the run on a skip that .ci/allowed-skips.txt lacks.
test: $(STAMP)
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -m "not slow"

lint: $(STAMP)
	.venv/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/tracking.py
	$(PY) benchmarks/sweep_storage.py
	$(PY) benchmarks/reliability.py
	$(PY) benchmarks/methods.py

# The quality ledger's gate (benchmarks/quality.py): every reference recipe rerun over 3 seeds, exit 1 on a figure
# below its recorded mean - max(2 sd, 0.01). Hours on 2 CPU cores: what a release is checked against, not CI.
quality: $(STAMP)
	$(PY) benchmarks/quality.py --check

clean:
	rm -rf mlruns checkpoints .pytest_cache
