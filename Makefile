# The README's two commands: `make demo` (the main job) and `make test` (every test). Both install what they need.
PY := .venv/bin/python

.PHONY: setup demo test test-fast lint test-python test-extension test-package test-e2e bench

setup:
	bash scripts/bootstrap.sh

# Safe training on the embedded synthetic Task01 data under the memory guard, then the packaged extension.
demo: setup
	bash scripts/demo.sh

test: setup lint test-python test-extension test-package test-e2e

# The edit-test loop (after `make setup`): the Python tests not marked `slow` (none that trains for long, drills a
# kill or an OOM end to end, or builds a venv; `slow` marks those measured over ~5 s) and the extension's unit tests.
# No lint, no e2e: `make test` runs everything.
test-fast:
	$(PY) -m pytest -m "not slow" -q
	@if [ -f package.json ]; then npm run --silent test:unit; fi

# ruff, the layers contract (import-linter) and the type checker (mypy): their settings are in pyproject.toml.
lint:
	$(PY) -m ruff check python_backend tests scripts examples benchmarks bundled/tool
	.venv/bin/lint-imports --no-logo
	$(PY) -m mypy
	@if [ -f package.json ]; then npm run --silent typecheck && npm run --silent lint; fi

test-python:
	$(PY) -m pytest

test-extension:
	@if [ -f package.json ]; then npm run --silent test:unit; fi

# The .vsix of every target (linux-x64, linux-arm64, darwin-x64, darwin-arm64), each checked by check_vsix.py for its
# own platform, into dist/vsix/: the extension is built once; only psutil's compiled module differs.
test-package:
	@if [ -f package.json ]; then npm run --silent package:all; fi

test-e2e:
	@if [ -f package.json ]; then bash scripts/e2e/setup.sh && npm run --silent test:e2e; fi

# Speed and memory figures (not part of `make test`; docs/benchmarks.md has the results).
bench: setup
	$(PY) -m benchmarks.sample_cost
	$(PY) -m benchmarks.sidecar_cost --seconds 60
	$(PY) -m benchmarks.spike_drill --rounds 3
	$(PY) -m benchmarks.registry_cost
	$(PY) -m benchmarks.flood_cost
	# The fuzz tier's long profile: 400 generated runs folders and 1000 generated requests (make test runs 30 and 100).
	CRASHGUARD_FUZZ_PROFILE=long $(PY) -m pytest tests/python/sidecar/test_fuzz_runs_folder.py -q -p no:cacheprovider
	$(PY) -m benchmarks.train_loops
	$(PY) -m benchmarks.checkpoint_cost
	$(PY) benchmarks/integrations.py
	[ -f data/Task01_BrainTumour/dataset.json ] || $(PY) -m crashguard sample-data
	$(PY) -m crashguard find-batch --config config/safe_training.json --out runs/find-batch
	$(PY) benchmarks/ddp_step.py
	# The recipe on realistic data (12 cases of 240x240x155x4): CPU preset vs the original recipe, 240 steps each
	# (about 1-2 hours on 2 CPU cores).
	[ -f data/realistic/Task01_BrainTumour/dataset.json ] || \
		$(PY) -m crashguard sample-data --realistic --out data/realistic/Task01_BrainTumour
	$(PY) benchmarks/recipe_realistic.py --steps 240 --val-every 40 --data data/realistic --out runs/bench-recipe
	$(PY) benchmarks/pytest_plugin_overhead.py --repeats 3
