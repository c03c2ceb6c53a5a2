# Every target sets up its own virtual environment from a fresh clone.
# torch is installed first and pinned, so pip takes the local CPU wheel and never the CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed-$(TORCH_VERSION)
DEMO_OUT ?= demo_output
TUTORIAL_CI_EPOCHS ?= 10

.PHONY: demo test lint format bench bench-fidelity bench-conditioning bench-counterfactual bench-perturbation bench-realism bench-continuous bench-privacy \
	bench-speed bench-training tutorials tutorials-ci docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scvi-diffusion demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -n auto --durations=25

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/train_generate.py

# held-out fidelity vs scVI and the paper's setup, 3 seeds, both protocols and marker genes:
# the bundled PBMCs (~20 min on 2 CPU cores) and PBMC3K (~40 min per seed)
bench-fidelity: $(STAMP)
	$(BIN)/python benchmarks/fidelity.py --out benchmarks/results

# classifier vs classifier-free guidance: held-out split, unseen combination, trajectory (~8 min)
bench-conditioning: $(STAMP)
	$(BIN)/python benchmarks/conditioning.py --out benchmarks/results

# counterfactuals of real cells on pbmc68k_two_factor, 3 seeds, both guidance modes (~15 min)
bench-counterfactual: $(STAMP)
	$(BIN)/python benchmarks/counterfactual.py --out benchmarks/results

# real perturbations: glioblastoma drug x patient (each patient's treated slice held out, and
# all seen), CellBench cell line x protocol, pbmc68k_two_factor (~30 min per seed)
bench-perturbation: $(STAMP)
	$(BIN)/python benchmarks/perturbation.py --out benchmarks/results

# realism over unlike data (bundled PBMCs, PBMC3K, CellBench CEL-seq2/Drop-seq, Smart-seq2 acinar
# cells): generated cells beside the autoencoder's ceiling and the real floor, 3 seeds (~45 min)
bench-realism: $(STAMP)
	$(BIN)/python benchmarks/realism.py --out benchmarks/results/realism_runs.jsonl

# continuous conditions: acinar donors aged 21-22 or 38-44 left out, generated back; beside the
# real neighbouring ages and Gradient Interpolation of a categorical model, 3 seeds (~22 min)
bench-continuous: $(STAMP)
	$(BIN)/python benchmarks/continuous.py --out benchmarks/results/continuous_runs.jsonl

# privacy of synthetic cells: default training on half of the cells, audited against the other
# half beside noisy copies of the training cells (bundled PBMCs, PBMC3K, acinar; 3 seeds)
bench-privacy: $(STAMP)
	$(BIN)/python benchmarks/privacy.py --out benchmarks/results/privacy_runs.jsonl

# default train() against scVI's, the denoiser against a bare PyTorch loop, training beside a
# busy process (~15 min on 2 CPU cores)
bench-training: $(STAMP)
	$(BIN)/python benchmarks/training_speed.py --out benchmarks/results

# samplers (fidelity and speed against steps), throughput at 2,000 genes, streaming 1M cells,
# training time and memory from 10k to 1M cells (~45 min on 2 CPU cores, ~25 GB of temp files)
bench-speed: $(STAMP)
	$(BIN)/python benchmarks/speed.py --out benchmarks/results

# execute the tutorial notebooks in place with their own training budgets: the outputs the
# docs show (~13 min on 2 CPU cores)
tutorials: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[tutorials]"
	$(BIN)/python scripts/run_notebooks.py tutorials/*.ipynb

# CI's check that every tutorial runs: small training budgets, executed copies in build/
tutorials-ci: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[tutorials]"
	$(BIN)/python scripts/run_notebooks.py --max-epochs $(TUTORIAL_CI_EPOCHS) --jobs 2 \
		--out-dir build/tutorials tutorials/*.ipynb

# the documentation (Sphinx, myst-nb, sphinx-book-theme); any warning is an error
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/generated
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build docs/_build docs/generated
