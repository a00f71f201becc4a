# Drift and the monitoring configuration: included by the Makefile.

PROMETHEUS_DIR := monitoring/prometheus
ALERTMANAGER_CONFIG := monitoring/alertmanager/alertmanager.yml

.PHONY: monitoring-check drift

drift: setup ## Drift of CURRENT=<csv> against @champion: reports/drift/ (JSON, Markdown, HTML), exit 1 on drift
	@test -n "$(CURRENT)" || { echo "usage: make drift CURRENT=path/to/new.csv"; exit 2; }
	$(RUN) {{ cookiecutter.project_slug }} drift --current $(CURRENT) --format md --format html

# amtool before 0.26 (Debian 12 ships 0.25) does not know url_file: such an amtool checks
# a copy whose url_file is a placeholder url, which validates everything else.
# MONITORING_TOOLS=required (as CI sets it): a missing promtool or amtool fails the check
# instead of skipping it.
MONITORING_TOOLS ?= optional
MONITORING_MISSING = $(if $(filter required,$(MONITORING_TOOLS)),exit 1,true)

monitoring-check: ## Check monitoring/: Prometheus config, alert rules and their tests, Alertmanager config
	@if command -v promtool >/dev/null; then \
	  promtool check config $(PROMETHEUS_DIR)/prometheus.yml && \
	  promtool check rules $(PROMETHEUS_DIR)/alerts.yml && \
	  promtool test rules $(PROMETHEUS_DIR)/tests/alerts_test.yml; \
	else \
	  echo "promtool not found (apt-get install prometheus): skipped the Prometheus checks"; \
	  $(MONITORING_MISSING); \
	fi
	@if ! command -v amtool >/dev/null; then \
	  echo "amtool not found (apt-get install prometheus-alertmanager): skipped the Alertmanager check"; \
	  $(MONITORING_MISSING); \
	elif amtool --version 2>&1 | grep -Eq 'version 0\.([0-9]|1[0-9]|2[0-5])\.'; then \
	  echo "amtool is older than 0.26: checking $(ALERTMANAGER_CONFIG) with a placeholder url for url_file"; \
	  sed -E 's|^([[:space:]-]*)url_file:.*|\1url: http://alert-webhook.invalid/|' $(ALERTMANAGER_CONFIG) | amtool check-config; \
	else \
	  amtool check-config $(ALERTMANAGER_CONFIG); \
	fi
# The drift check's input: recent data from anywhere DVC reads.
DRIFT_INPUT := build/drift/current.csv

.PHONY: drift-input

drift-input: setup ## Fetch SOURCE (a path, or a URL dvc get-url reads: s3://, gs://, azure://, https://) to build/drift/current.csv
	@test -n "$(SOURCE)" || { echo "usage: make drift-input SOURCE=<csv path or URL>"; exit 2; }
	@mkdir -p $(dir $(DRIFT_INPUT)) && rm -f $(DRIFT_INPUT)
	$(RUN) dvc get-url '$(SOURCE)' $(DRIFT_INPUT)
