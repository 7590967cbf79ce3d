#!/usr/bin/env bash
# Restarts the cluster's Redis (with new settings for its container, when given)
# and then RedisStreamSource's adapter, which has to follow it: the adapter
# keeps one connection per reader and never dials again, so after a Redis
# restart it stays Running and Ready and delivers nothing (eventing-redis
# pkg/source/adapter/adapter.go; cluster/README.md, "Known upstream issues").
# Nothing is lost meanwhile (persist's sweeper and catch-up read the stream
# themselves), but events reach MongoDB only at the sweeper's pace.
#
#   cluster/redis-restart.sh [--dry-run] [NAME=value ...]
#
# NAME=value  environment of the Redis container to set, e.g.
#             REDIS_APPENDFSYNC=always (cluster/redis.yaml); none: a plain restart
# Linux hosts only (WSL2 included).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "${ROOT}/cluster/lib.sh"
require_linux redis-restart.sh
cd "${ROOT}"

NAMESPACE="spillway"
WAIT_TIMEOUT="--timeout=300s"
# The adapter StatefulSet the source's reconciler makes for RedisStreamSource
# spillway-events: kmeta.ChildName("redissource-<name>-", "1234") (eventing-redis
# pkg/source/reconciler/streamsource/resources/receive_adapter.go).
ADAPTER="statefulset/redissource-spillway-events-1234"

SETTINGS=()
for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      sed -n '2,14p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    [A-Z_]*=*) SETTINGS+=("${arg}") ;;
    *)
      echo "redis-restart.sh: unknown argument '${arg}' (known: --dry-run, NAME=value)" >&2
      exit 2
      ;;
  esac
done

if [[ ${DRY_RUN} -eq 0 ]]; then
  require_tools kubectl
fi
if [[ ${#SETTINGS[@]} -gt 0 ]]; then
  # A changed pod template rolls the StatefulSet by itself.
  run kubectl -n "${NAMESPACE}" set env statefulset/redis "${SETTINGS[@]}"
else
  run kubectl -n "${NAMESPACE}" rollout restart statefulset/redis
fi
run kubectl -n "${NAMESPACE}" rollout status statefulset/redis "${WAIT_TIMEOUT}"
run kubectl -n "${NAMESPACE}" rollout restart "${ADAPTER}"
run kubectl -n "${NAMESPACE}" rollout status "${ADAPTER}" "${WAIT_TIMEOUT}"
