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
	$(COMPOSE) up -d --build
	$(COMPOSE) ps

stack-down: ## Stop the compose stack (volumes are kept: docker compose down -v drops them)
	$(COMPOSE) down
