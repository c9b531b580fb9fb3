# Benchmarks (see bench/ and docs/BENCHMARKS.md). Run `bash scripts/setup.sh` first.
PY ?= .venv/bin/python

.PHONY: bench bench-smoke bench-ansible

bench-ansible:
	bash bench/setup_ansible.sh

# Everything, 3 interleaved repetitions each; rewrites docs/BENCHMARKS.md (about 20 minutes).
bench: bench-ansible
	$(PY) -m bench.run

# Tiny sizes, one repetition: checks that every script still works; report in bench/results/SMOKE.md.
bench-smoke:
	$(PY) -m bench.run --smoke
