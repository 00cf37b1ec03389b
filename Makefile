# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_OUT ?= demo_output

.PHONY: demo test venv bench

venv:
	@bash tools/setup_env.sh $(VENV)

# Until the end-to-end demo lands: one real training step of every mixing policy on CPU.
demo: venv
	$(PYTHON) tools/bench_mixer.py --steps 3 --repeats 1 --out $(DEMO_OUT)/bench_mixer.json

test: venv
	$(PYTHON) -m pytest -q

bench: venv
	$(PYTHON) tools/bench_mixer.py --out benchmarks/results/bench_mixer_$$(hostname).json
