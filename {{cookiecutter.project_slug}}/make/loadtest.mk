# The load test of a running server (locust): included by the Makefile.
#
# locust runs in an environment of its own (uv tool run, at the version pinned here), so
# it never enters uv.lock nor moves a version of the project's packages; loadtest/ imports
# nothing of the project, only the exported model's schema and profile in MODEL_DIR.
# Thresholds, from the environment or the make line (defaults in loadtest/locustfile.py):
# LOADTEST_P99_MS (500), LOADTEST_MAX_ERROR_RATE (0.01), LOADTEST_ROWS per request (1).

LOCUST_VERSION ?= 2.47.0
USERS ?= 10
SPAWN_RATE ?= $(USERS)
DURATION ?= 30s
LOADTEST_DIR ?= build/loadtest

.PHONY: loadtest

loadtest: $(UV) ## Load the server at URL with USERS users for DURATION; fail past LOADTEST_P99_MS or LOADTEST_MAX_ERROR_RATE
	@mkdir -p $(LOADTEST_DIR) && rm -f $(LOADTEST_DIR)/locust_*.csv $(LOADTEST_DIR)/report.html
	LOADTEST_MODEL_DIR=$(MODEL_DIR) $(UV) tool run --from locust==$(LOCUST_VERSION) locust \
	  --locustfile loadtest/locustfile.py --headless --only-summary \
	  --host $(or $(URL),http://127.0.0.1:$(PORT)) \
	  --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) \
	  --csv $(LOADTEST_DIR)/locust --html $(LOADTEST_DIR)/report.html
