# docker compose: included by the Makefile.
{% if cookiecutter.monitoring == "prometheus" %}
# docker-compose.yml, plus docker-compose.monitoring.yml (Prometheus, Alertmanager, Grafana).
COMPOSE := docker compose -f docker-compose.yml -f docker-compose.monitoring.yml
{%- else %}
COMPOSE := docker compose -f docker-compose.yml
{%- endif %}

.PHONY: stack-up stack-down

stack-up: ## Build the API image and start the docker compose stack (needs Docker)
	$(NEED_LOCK)
	@test -f build/model/registry.json || { echo "build/model has no exported model, which the API image ships: make pipeline export-model"; exit 1; }
{%- if cookiecutter.feature_store == "feast" %}
	@test -f $(COMPOSE_FEAST_REGISTRY) || { echo "$(COMPOSE_FEAST_REGISTRY) is missing, the feature registry the API reads: make stack-materialize"; exit 1; }
{%- endif %}
	$(COMPOSE) up -d --build
	$(COMPOSE) ps

stack-down: ## Stop the compose stack (volumes are kept: docker compose down -v drops them)
	$(COMPOSE) down
{%- if cookiecutter.feature_store == "feast" %}

# Feast in the stack: the API reads features by entity id from the redis service, with
# feature_repo/feature_store.production.yaml and the registry in data/compose/ (the data
# folder is mounted read-only into the API's container). This fills both from the host's
# .venv: apply the definitions, then materialize data/processed/features.parquet (make
# pipeline) into Redis. Run it before stack-up, and again when the features change.
COMPOSE_FEAST_REGISTRY := data/compose/feast-registry.db
REDIS_PORT ?= $(or $(shell sed -n 's/^REDIS_PORT=//p' .env 2>/dev/null),6379)

.PHONY: stack-materialize

stack-materialize: setup ## Start the stack's Redis, then fill it with the features of make pipeline (feast apply, materialize)
	@test -f data/processed/features.parquet || { echo "data/processed/features.parquet is missing: make pipeline"; exit 1; }
	$(COMPOSE) up -d --wait redis
	@mkdir -p $(dir $(COMPOSE_FEAST_REGISTRY))
	export FEATURE_STORE_YAML=feature_repo/feature_store.production.yaml \
	  REDIS_CONNECTION_STRING=127.0.0.1:$(REDIS_PORT) \
	  FEATURE_REGISTRY_URL=$(CURDIR)/$(COMPOSE_FEAST_REGISTRY) && \
	  $(RUN) feast -c feature_repo -f "$$FEATURE_STORE_YAML" apply && \
	  $(RUN) {{ cookiecutter.project_slug }} materialize
{%- endif %}
