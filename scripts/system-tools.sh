#!/usr/bin/env bash
# The system tools the template's tests run for real, from Debian's packages: installed
# with apt-get when this runs as root (or with passwordless sudo), otherwise the one
# command to run is printed and the script fails. `make test` calls it first.
set -euo pipefail

# command the tests (and the benchmarks) call -> the Debian package that provides it
declare -A PACKAGES=(
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [podman]=podman
  [runc]=runc
  [mmdebstrap]=mmdebstrap
  [pg_ctl]=postgresql
  [wrk]=wrk  # bench/serve.py's load generator
  [chromium]=chromium  # opens the HTML drift report in tests/test_monitoring_e2e.py
  [prometheus-pushgateway]=prometheus-pushgateway  # receives the drift CronJob's metrics
  [redis-server]=redis-server  # the feature store's online store (feature_store=feast)
)

missing=()
for tool in "${!PACKAGES[@]}"; do
  if [[ $tool == pg_ctl ]]; then
    # Debian keeps the server binaries in its versioned directory, off PATH.
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null && continue
  else
    command -v "$tool" >/dev/null && continue
  fi
  missing+=("${PACKAGES[$tool]}")
done
((${#missing[@]})) || exit 0

install="apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null; then
  echo "the tests need ${missing[*]} (Debian package names); no apt-get here: install them" \
    "with your package manager (podman needs rootful runc and vfs: see tests/containers.py)" >&2
  exit 1
fi
if [[ $(id -u) == 0 ]]; then
  sudo=()
elif sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "the tests need ${missing[*]}: run  sudo apt-get update && sudo $install" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt-get)"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive $install -qq >/dev/null
