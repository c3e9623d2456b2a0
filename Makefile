# `make demo` and `make test` each create .venv and install the project when missing, then run.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	# The CPU machines carry this torch/torchvision pair on disk; pinning it avoids a multi-GB download.
	# One resolve for the pair and the project. pip byte-compiles the venv (about a minute of one core): left to
	# first use, nothing would be cached where PYTHONDONTWRITEBYTECODE is set (as on these machines), and every
	# process the tests start would compile torch and Lightning from source again (measured: tests 10 -> 18 min).
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
	# transformers beside the venv, for the test of a local Hugging Face text tower only: inside it, torchmetrics
	# would import it in every process the tests start (0.7 s each). Its other dependencies are in the venv.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target .venv/hf transformers regex
	touch $(STAMP)

# A small SimCLR sweep on digits, two trials at a time; rerunning it resumes the study.
demo: $(STAMP)
	.venv/bin/contrastlab sweep -c configs/sweeps/simclr_digits.yaml --workers 2

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	.venv/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/tracking.py
	$(PY) benchmarks/sweep_storage.py
	$(PY) benchmarks/reliability.py
	$(PY) benchmarks/methods.py

clean:
	rm -rf mlruns checkpoints .pytest_cache
