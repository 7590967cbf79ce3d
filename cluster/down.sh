#!/usr/bin/env bash
# Deletes what cluster/up.sh created: the k3d cluster (with Redis's volume)
# and the MongoDB container, and MongoDB's data volume unless --keep-data.
# The host's kernel settings are left as they are (a reboot resets them).
#
#   cluster/down.sh [--dry-run] [--keep-data]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "${ROOT}/cluster/lib.sh"
require_linux down.sh
cd "${ROOT}"

CLUSTER="spillway"
MONGO_CONTAINER="spillway-mongodb"
MONGO_VOLUME="spillway-mongodb-data"

KEEP_DATA=0
for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    --keep-data) KEEP_DATA=1 ;;
    -h | --help)
      sed -n '2,6p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "down.sh: unknown argument '${arg}' (known: --dry-run, --keep-data)" >&2
      exit 2
      ;;
  esac
done

if [[ ${DRY_RUN} -eq 0 ]]; then
  require_tools docker k3d
fi
# The container first: it sits on the cluster's network, which k3d removes.
run docker rm --force "${MONGO_CONTAINER}"
run k3d cluster delete "${CLUSTER}"
if [[ ${KEEP_DATA} -eq 0 ]]; then
  run docker volume rm --force "${MONGO_VOLUME}"
fi
