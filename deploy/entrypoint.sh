#!/usr/bin/env bash
# The image's entrypoint: one image, four roles (docs/deploy.md, "What runs where").
#
#   code-server   the `engage` code location's gRPC server (port DAGSTER_CODE_SERVER_PORT, 4000)
#   events-code-server
#                 the `engage_events` code location's (the reactive programs' event path: decision stages, decide
#                 jobs, cart-event sensors; port DAGSTER_EVENTS_CODE_SERVER_PORT, 4001)
#   webserver     the Dagster UI and GraphQL API (port DAGSTER_WEBSERVER_PORT, 3000), on deploy/workspace.yaml
#   daemon        schedules, sensors, the run queue (launches each run as an ECS task), run monitoring
#   migrate       `dagster instance migrate`: the instance's tables in PostgreSQL, after every Dagster upgrade
#
# Anything else is run as given, so the run tasks the ECS run launcher starts (their command is
# `dagster api execute_run …`) and one-off commands (`engage create-tables`, `engage api-key create …`) work whether
# or not ECS keeps this entrypoint.  ENGAGE_ENTRYPOINT_DRY_RUN=1 prints the command instead of running it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="${DAGSTER_WORKSPACE:-$here/workspace.yaml}"

role="${1:-}"
case "$role" in
  code-server)
    shift
    cmd=(dagster code-server start
      --host "${DAGSTER_CODE_SERVER_BIND:-0.0.0.0}" --port "${DAGSTER_CODE_SERVER_PORT:-4000}"
      --module-name engage_assets.definitions --location-name engage "$@")
    ;;
  events-code-server)
    shift
    cmd=(dagster code-server start
      --host "${DAGSTER_CODE_SERVER_BIND:-0.0.0.0}" --port "${DAGSTER_EVENTS_CODE_SERVER_PORT:-4001}"
      --module-name engage_assets.reactive_location --location-name engage_events "$@")
    ;;
  webserver)
    shift
    cmd=(dagster-webserver
      --host "${DAGSTER_WEBSERVER_BIND:-0.0.0.0}" --port "${DAGSTER_WEBSERVER_PORT:-3000}"
      --workspace "$workspace" "$@")
    ;;
  daemon)
    shift
    cmd=(dagster-daemon run --workspace "$workspace" "$@")
    ;;
  migrate)
    shift
    cmd=(dagster instance migrate "$@")
    ;;
  "")
    echo "usage: entrypoint.sh code-server|events-code-server|webserver|daemon|migrate|COMMAND [ARGS…]" >&2
    exit 2
    ;;
  *)
    cmd=("$@")
    ;;
esac

if [[ "${ENGAGE_ENTRYPOINT_DRY_RUN:-}" == "1" ]]; then
  printf '%s\n' "${cmd[@]}"
  exit 0
fi
exec "${cmd[@]}"
