# The Kubeflow Pipelines SDK, in an environment of its own: .venv-kfp, locked in
# orchestration/kubeflow/uv.lock (commit it). The pipeline in pipelines/ runs the project's
# commands in the train image, or from .venv with kfp-run.
KFP_VENV := .venv-kfp
KFP_PROJECT := orchestration/kubeflow

.PHONY: kfp-setup kfp-compile kfp-submit kfp-run kfp-test

$(KFP_VENV)/.installed: $(KFP_PROJECT)/pyproject.toml $(wildcard $(KFP_PROJECT)/uv.lock) $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(KFP_VENV) $(UV) sync --project $(KFP_PROJECT)
	@touch $@

kfp-setup: $(KFP_VENV)/.installed ## Install the Kubeflow Pipelines SDK in .venv-kfp

kfp-compile: kfp-setup ## Compile the pipeline to pipelines/training.yaml (defaults from params.yaml)
	$(KFP_VENV)/bin/python pipelines/training.py compile

kfp-submit: kfp-setup ## Compile, then start a run on the KFP API at KFP_HOST (KFP_TOKEN, KFP_NAMESPACE)
	$(KFP_VENV)/bin/python pipelines/training.py submit

kfp-run: setup kfp-setup ## Run the pipeline here with kfp.local, no cluster (FORCE=true re-runs every stage)
	$(KFP_VENV)/bin/python pipelines/local.py $(if $(filter true,$(FORCE)),--force)

kfp-test: setup kfp-setup ## The pipeline's tests: compile and check it, run it with kfp.local (champion, missed gate)
	$(KFP_VENV)/bin/pytest -p no:cacheprovider $(KFP_PROJECT)/tests
