# The README's commands. Every target first makes sure .venv is set up (scripts/setup.sh is a no-op when
# it is up to date), then runs with .venv/bin first on PATH so Snakemake rules find `caig`.
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# DeepSpeed JIT-compiles a C++ op on first use (~35 s on 2 cores); keep the build between runs.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
CORES ?= 2
# What `make demo` builds: the tiny `all`, or the targets given (TARGETS="results/tiny/pairs/summary.json").
TARGETS ?= all

.PHONY: setup demo test tables report readme lint

setup:
	@bash scripts/setup.sh

# A run killed before (Ctrl-C, SIGKILL, a crash) resumes with the same command: the workflow clears the lock
# it left, or stops naming the run that is still going (README.md, Troubleshooting).
demo: setup  ## the tiny `all` (or TARGETS): every stage on the tiny preset, on this machine's cores
	snakemake --cores $(CORES) $(TARGETS)

test: setup  ## unit, integration (tiny DAG) and cluster (local Slurm) tests
	pytest

tables: setup  ## rebuild the tables and figures from finished runs
	snakemake --cores $(CORES) tables

report: setup  ## HTML report of a finished run
	snakemake --report report.html

readme: setup  ## put the finished tiny run's tables and figure into README.md
	caig readme-tables --run results/tiny --readme README.md

lint: setup
	snakemake --lint
	snakefmt --check workflow
