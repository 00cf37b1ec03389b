# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_OUT ?= demo_output

.PHONY: demo test venv bench

venv:
	@bash tools/setup_env.sh $(VENV)

# Pretraining -> transfer -> robustness report on scikit-learn's digits, on the CPU: $(DEMO_OUT)/report.md.
demo: venv
	$(PYTHON) tools/run_demo.py --out $(DEMO_OUT)

test: venv
	$(PYTHON) -m pytest -q

bench: venv
	$(PYTHON) benchmarks/bench_mixer.py --out benchmarks/results/bench_mixer_$$(hostname).json
