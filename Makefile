# Quick start: `make run` (set up, then the whole study on the default profile)
# and `make test` (set up, then the test suite). Everything else is Snakemake:
# ./snakemake --cores 4 [target]
PYTHON ?= python3
VENV := .venv
DEBIAN_LISTS := $(wildcard envs/debian/*.txt)
CORES ?= 4

.PHONY: setup debian-packages run test lint clean

setup: debian-packages $(VENV)/.installed

debian-packages:
	./envs/install-debian $(DEBIAN_LISTS)

# Rebuilt only when the pinned requirements change.
$(VENV)/.installed: envs/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r envs/requirements.txt
	touch $@

# The whole study on the default profile, then where everything is; the claims'
# verdicts, what a reader wants first, last (also after a failed run, if made).
run: setup
	@./snakemake --cores $(CORES) all report archive runtime; status=$$?; \
	echo; echo "Tables:   results/tables/ (blk_*, net_*, overhead_*, claims: .md .csv .tex; runtime: .md .csv)"; \
	echo "Figures:  results/figures/ (.png .pdf)"; \
	echo "Report:   results/report.html (open in a browser)"; \
	echo "Archive:  results/artifact.tar.gz (the paper artifact)"; \
	echo "Runtime:  results/tables/runtime.md (seconds per rule)"; \
	if [ -f results/tables/claims.md ]; then echo; cat results/tables/claims.md; fi; \
	exit $$status

test: setup
	$(VENV)/bin/python -m pytest tests

# snakemake --lint also asks every rule for a conda env or container, which
# these machines cannot use; the test checks that nothing else is reported.
lint: setup
	$(VENV)/bin/ruff check workflow tests
	$(VENV)/bin/python -m pytest -q tests/workflow/test_dag.py -k lint

clean:
	rm -rf results/raw results/data results/tables results/figures results/build \
	  results/sources results/apt results/provenance.json results/artifact.tar.gz \
	  results/report.html
