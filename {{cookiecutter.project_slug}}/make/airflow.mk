{%- set dag_id = cookiecutter.module_name ~ "_training" -%}
# Airflow, in an environment of its own: .venv-airflow, locked in orchestration/airflow/uv.lock
# (commit it). The DAG in dags/ runs the project's commands from .venv.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_PROJECT := orchestration/airflow
# A throwaway Airflow for airflow-run: its own home and sqlite database, no scheduler.
AIRFLOW_LOCAL := AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__LOAD_EXAMPLES=False

.PHONY: airflow-setup airflow-test airflow-run

$(AIRFLOW_VENV)/.installed: $(AIRFLOW_PROJECT)/pyproject.toml $(wildcard $(AIRFLOW_PROJECT)/uv.lock) $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(AIRFLOW_VENV) $(UV) sync --project $(AIRFLOW_PROJECT)
	@touch $@

airflow-setup: $(AIRFLOW_VENV)/.installed ## Install Airflow and its providers in .venv-airflow

airflow-test: setup airflow-setup ## Run the DAG for real (dag.test, sqlite, a copy of the project): train, skip, failed gate
	$(AIRFLOW_VENV)/bin/pytest -p no:cacheprovider $(AIRFLOW_PROJECT)/tests

airflow-run: setup airflow-setup ## One run of the DAG on this project, no scheduler (FORCE=true retrains whatever changed)
	@home=$$(mktemp -d); trap 'rm -rf "$$home"' EXIT; \
	export AIRFLOW_HOME=$$home AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$$home/airflow.db $(AIRFLOW_LOCAL); \
	$(AIRFLOW_VENV)/bin/airflow db migrate >/dev/null && \
	$(AIRFLOW_VENV)/bin/airflow dags test {{ dag_id }} --conf '{"force": $(if $(FORCE),true,false)}'
