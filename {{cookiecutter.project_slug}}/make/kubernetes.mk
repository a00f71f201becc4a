# deploy/k8s/: included by the Makefile.

# deploy/k8s/: kubectl with its built-in kustomize. The check runs offline on the schemas
# kubernetes-validate ships (uv fetches the tool on first use), twice: for the oldest
# Kubernetes the manifests need, K8S_MIN_VERSION (1.30: the API's preStop sleep), and for
# K8S_VERSION.
K8S_OVERLAYS := staging production canary blue-green
K8S_MIN_VERSION := 1.30.0
K8S_VERSION ?= 1.32.0
ENV ?= staging

.PHONY: k8s-render k8s-validate k8s-deploy k8s-switch

k8s-render: ## Render each overlay of deploy/k8s/ to build/k8s/<overlay>.yaml (kubectl kustomize)
	@mkdir -p build/k8s
	@for overlay in $(K8S_OVERLAYS); do \
	  kubectl kustomize deploy/k8s/overlays/$$overlay > build/k8s/$$overlay.yaml || exit 1; \
	  echo "rendered build/k8s/$$overlay.yaml"; \
	done

K8S_CHECK = $(UV) run --no-project --with kubernetes-validate==1.37.0 python deploy/k8s/check_manifests.py
K8S_RENDERED = $(foreach overlay,$(K8S_OVERLAYS),build/k8s/$(overlay).yaml)

k8s-validate: k8s-render $(UV) ## Check the rendered manifests: strict Kubernetes schemas, CRD fields, selectors
	$(K8S_CHECK) --kubernetes-version $(K8S_MIN_VERSION) $(K8S_RENDERED) deploy/k8s/smoke-job.yaml
	$(K8S_CHECK) --kubernetes-version $(K8S_VERSION) $(K8S_RENDERED) deploy/k8s/smoke-job.yaml

# What runs in the production namespace comes from one place: the digests CI deployed
# (make k8s-release, recorded by it). The overlays' newTag would put back an older image,
# so k8s-deploy applies them only to staging (a cluster of your own, say); blue-green
# keeps its colours' images in git and applies its overlay as committed.
K8S_DEPLOYABLE := staging blue-green

k8s-deploy: k8s-validate ## Apply an overlay as committed (staging, blue-green): make k8s-deploy ENV=staging
	@test -d deploy/k8s/overlays/$(ENV) || { echo "ENV=$(ENV): no such overlay (one of: $(K8S_OVERLAYS))" >&2; exit 2; }
	@test -n "$(filter $(ENV),$(K8S_DEPLOYABLE))" || { echo "ENV=$(ENV): its images are what CI deployed by digest, not the overlay's newTag: make k8s-release ENV=$(ENV) IMAGE=… DIGEST=sha256:… TRAIN_DIGEST=sha256:…" >&2; exit 2; }
	kubectl apply -k deploy/k8s/overlays/$(ENV)

# Blue-green: the Service of deploy/k8s/overlays/blue-green sends the traffic to the live
# colour, the `color:` line of its live.yaml; releases go to the other, idle, colour.
K8S_BLUE_GREEN := deploy/k8s/overlays/blue-green
K8S_LIVE_FILE := $(K8S_BLUE_GREEN)/live.yaml
# $(call k8s_color,VALUE,MESSAGE): VALUE if it is blue or green, else stop with MESSAGE.
k8s_color = $(if $(and $(filter 1,$(words $1)),$(filter blue green,$1)),$1,$(error $2))
K8S_LIVE_COLOR = $(call k8s_color,$(shell sed -n 's/^    color: //p' $(K8S_LIVE_FILE) 2>/dev/null),$(K8S_LIVE_FILE): no line `    color: blue` or `    color: green`)
K8S_IDLE_COLOR = $(if $(filter blue,$(K8S_LIVE_COLOR)),green,blue)
K8S_COLOR = $(call k8s_color,$(COLOR),$(if $(COLOR),COLOR=$(COLOR) is not a colour,COLOR is not set): make k8s-switch COLOR=blue or COLOR=green)

k8s-switch: ## Blue-green: the Service selects COLOR, in the overlay's live.yaml (to commit; applies nothing)
	@color=$(K8S_COLOR); live=$(K8S_LIVE_COLOR); \
	if [ "$$color" = "$$live" ]; then \
	  echo "$$color is live already ($(K8S_LIVE_FILE)): nothing to change"; \
	else \
	  sed "s/^    color: .*/    color: $$color/" $(K8S_LIVE_FILE) > $(K8S_LIVE_FILE).tmp && \
	    mv $(K8S_LIVE_FILE).tmp $(K8S_LIVE_FILE) && \
	  echo "$(K8S_LIVE_FILE): the Service selects $$color (was $$live). Commit it, then apply it:" && \
	  echo "  kubectl apply -k $(K8S_BLUE_GREEN)"; \
	fi

# A release: ENV's overlay with the API image and the jobs' $(IMAGE)-train, by digest
# (DIGEST and TRAIN_DIGEST, sha256:…, what CI's build pushed: the same bytes whatever a tag
# points at later) or by TAG, through build/k8s/release-<ENV>/kustomization.yaml, which
# patches the images (nothing under deploy/ changes); kubectl's current context.
K8S_API_IMAGE = $(if $(DIGEST),$(IMAGE)@$(DIGEST),$(IMAGE):$(TAG))
K8S_TRAIN_IMAGE = $(if $(TRAIN_DIGEST),$(IMAGE)-train@$(TRAIN_DIGEST),$(IMAGE)-train:$(TAG))
K8S_RELEASE_USAGE = usage: make k8s-release ENV=<overlay> IMAGE=<name> DIGEST=sha256:<64 hex> \
  TRAIN_DIGEST=sha256:<64 hex> (or TAG=<tag> for both)
K8S_ENV = $(if $(and $(filter 1,$(words $(ENV))),$(filter $(ENV),$(K8S_OVERLAYS))),$(ENV),$(error ENV=$(ENV): use one of $(K8S_OVERLAYS)))
# ENV=blue-green releases to the idle colour and leaves the live one alone (the apply
# skips its objects); `make k8s-switch` then gives the idle colour the traffic.
K8S_NAMESPACE = {{ cookiecutter.project_slug }}-$(if $(filter canary blue-green,$(K8S_ENV)),production,$(K8S_ENV))
K8S_DEPLOYMENT = {{ cookiecutter.project_slug }}$(if $(filter canary,$(K8S_ENV)),-canary)$(if $(filter blue-green,$(K8S_ENV)),-$(K8S_IDLE_COLOR))
K8S_APPLY_SELECTOR = $(if $(filter blue-green,$(K8S_ENV)), -l 'color!=$(K8S_LIVE_COLOR)')
K8S_RELEASED = $(K8S_API_IMAGE) runs in $(K8S_DEPLOYMENT), idle. To make it live: its newTag in \
  $(K8S_BLUE_GREEN)/$(K8S_IDLE_COLOR)/kustomization.yaml and make k8s-switch COLOR=$(K8S_IDLE_COLOR), \
  committed together, then kubectl apply -k $(K8S_BLUE_GREEN)
K8S_NO_ROLLBACK = ENV=blue-green rolls back by switching the traffic to the other colour, \
  $(K8S_IDLE_COLOR) (idle now): make k8s-switch COLOR=$(K8S_IDLE_COLOR), commit, then kubectl apply -k $(K8S_BLUE_GREEN)
K8S_RELEASE_DIR = build/k8s/release-$(K8S_ENV)
K8S_ROLLOUT_TIMEOUT ?= 10m
K8S_SMOKE_TIMEOUT ?= 180
# The canary overlay has no CronJobs: its releases are the API image alone.
K8S_RELEASES = python3 deploy/k8s/releases.py --namespace $(K8S_NAMESPACE) --deployment $(K8S_DEPLOYMENT) \
  --slug '$(if $(filter canary,$(K8S_ENV)),,{{ cookiecutter.project_slug }})'

# $(call k8s_apply_images): a recipe line applying ENV's overlay with the API image
# $$api and the jobs' image $$train (shell variables; "-" keeps the overlay's), through
# $(K8S_RELEASE_DIR)/kustomization.yaml, which patches them (nothing under deploy/
# changes), then waiting for the rollout.
define k8s_apply_images
mkdir -p $(K8S_RELEASE_DIR); \
	{ printf '%s\n' \
	  'apiVersion: kustomize.config.k8s.io/v1beta1' \
	  'kind: Kustomization' \
	  'resources:' \
	  '  - ../../../deploy/k8s/overlays/$(K8S_ENV)' \
	  'patches:' \
	  '  - target:' \
	  '      kind: Deployment' \
	  '      name: $(K8S_DEPLOYMENT)' \
	  '    patch: |-' \
	  '      - op: replace' \
	  '        path: /spec/template/spec/containers/0/image' \
	  "        value: $$api"; \
	  if [ "$$train" != - ]; then printf '%s\n' \
	  '  - target:' \
	  '      kind: CronJob' \
	  '    patch: |-' \
	  '      - op: replace' \
	  '        path: /spec/jobTemplate/spec/template/spec/containers/0/image' \
	  "        value: $$train"; fi; \
	} > $(K8S_RELEASE_DIR)/kustomization.yaml; \
	kubectl apply -k $(K8S_RELEASE_DIR)$(K8S_APPLY_SELECTOR) && \
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/$(K8S_DEPLOYMENT) --timeout=$(K8S_ROLLOUT_TIMEOUT)
endef

.PHONY: k8s-release k8s-smoke k8s-rollback

# The images running before the release are recorded first (configmap/<deployment>-releases,
# deploy/k8s/releases.py), the new ones once their rollout is done: k8s-rollback goes back
# through that record.
k8s-release: ## Apply overlay ENV with IMAGE@DIGEST (jobs: IMAGE-train@TRAIN_DIGEST) or :TAG, wait for the rollout
	@test -n "$(IMAGE)" || { echo "$(K8S_RELEASE_USAGE)" >&2; exit 2; }
	@if [ -n "$(DIGEST)$(TRAIN_DIGEST)" ]; then \
	  for digest in '$(DIGEST)' '$(TRAIN_DIGEST)'; do \
	    printf '%s\n' "$$digest" | grep -Eqx 'sha256:[0-9a-f]{64}' || \
	      { echo "DIGEST and TRAIN_DIGEST: sha256:<64 hex digits> each, not '$$digest'" >&2; exit 2; }; \
	  done; \
	elif [ -z "$(TAG)" ]; then echo "$(K8S_RELEASE_USAGE)" >&2; exit 2; fi
	@$(if $(filter blue-green,$(K8S_ENV)),:,$(K8S_RELEASES) before)
	@api='$(K8S_API_IMAGE)'; train='$(K8S_TRAIN_IMAGE)'; $(k8s_apply_images)
	@$(if $(filter blue-green,$(K8S_ENV)),echo "$(K8S_RELEASED)",$(K8S_RELEASES) after)

k8s-rollback: ## Roll ENV back to the images recorded before its last release (API and CronJobs), wait for it
	$(if $(filter blue-green,$(K8S_ENV)),@echo "$(K8S_NO_ROLLBACK)" >&2; exit 2)
	@release=$$($(K8S_RELEASES) target) || exit $$?; \
	api=$${release% *}; train=$${release#* }; \
	echo "rolling $(K8S_NAMESPACE)/$(K8S_DEPLOYMENT) back to $$api (jobs: $$train)"; \
	$(k8s_apply_images) && \
	$(K8S_RELEASES) settle --api "$$api" --train "$$([ "$$train" = - ] && echo || echo "$$train")"

# The Job of deploy/k8s/smoke-job.yaml, in ENV's namespace, with the image the API runs:
# it calls the Service by name, so it tests what the Service serves.
k8s-smoke: ## Smoke-test ENV's Service from inside the cluster (a Job: ready, then one prediction)
	@api=$$(kubectl -n $(K8S_NAMESPACE) get deployment/$(K8S_DEPLOYMENT) -o jsonpath='{.spec.template.spec.containers[0].image}') && \
	  [ -n "$$api" ] || { echo "nothing to smoke-test: $(K8S_NAMESPACE) has no deployment/$(K8S_DEPLOYMENT)" >&2; exit 2; }; \
	kubectl -n $(K8S_NAMESPACE) delete job/{{ cookiecutter.project_slug }}-smoke --ignore-not-found --wait=true >/dev/null; \
	sed "s|^          image: .*|          image: $$api|" deploy/k8s/smoke-job.yaml | kubectl -n $(K8S_NAMESPACE) apply -f - >/dev/null || exit 1; \
	outcome=; waited=0; \
	while [ -z "$$outcome" ] && [ $$waited -lt $(K8S_SMOKE_TIMEOUT) ]; do \
	  outcome=$$(kubectl -n $(K8S_NAMESPACE) get job/{{ cookiecutter.project_slug }}-smoke \
	    -o jsonpath='{.status.conditions[?(@.status=="True")].type}' | grep -Eo 'Complete|Failed' | head -n 1); \
	  [ -n "$$outcome" ] || { sleep 2; waited=$$((waited + 2)); }; \
	done; \
	kubectl -n $(K8S_NAMESPACE) logs job/{{ cookiecutter.project_slug }}-smoke; \
	case "$$outcome" in \
	  Complete) echo "smoke test passed: $(K8S_NAMESPACE)/service/{{ cookiecutter.project_slug }}";; \
	  Failed) echo "smoke test failed (job/{{ cookiecutter.project_slug }}-smoke): $(K8S_NAMESPACE)/service/{{ cookiecutter.project_slug }}" >&2; exit 1;; \
	  *) echo "smoke test without an outcome after $(K8S_SMOKE_TIMEOUT) s: $(K8S_NAMESPACE)/service/{{ cookiecutter.project_slug }}" >&2; exit 1;; \
	esac
