#!/usr/bin/env bash
# Replays the Trigger's dead letters: moves every entry of the stream
# "spillway:dead-letters" back into "spillway:events", where the source delivers
# it to persist again. Safe to repeat: persist keys documents by event id.
#
#   cluster/replay-dead-letters.sh [--dry-run] [--batch N]
#
# REDIS_CLI overrides how redis-cli is reached (default: inside the cluster's
# Redis pod), e.g. REDIS_CLI="redis-cli -p 6390" for a local Redis.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "${HERE}/lib.sh"
DEAD_LETTER_STREAM="spillway:dead-letters"
EVENT_STREAM="spillway:events"
BATCH=1000
DRY_RUN=0
read -r -a REDIS_CLI_CMD <<<"${REDIS_CLI:-kubectl -n spillway exec redis-0 -c redis -- redis-cli}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --batch)
      BATCH="${2:?--batch needs a number}"
      shift
      ;;
    *)
      echo "replay-dead-letters.sh: unknown argument '$1' (known: --dry-run, --batch N)" >&2
      exit 2
      ;;
  esac
  shift
done
if ! [[ ${BATCH} =~ ^[1-9][0-9]*$ ]]; then
  echo "replay-dead-letters.sh: --batch must be a positive integer, got '${BATCH}'" >&2
  exit 2
fi

# The script on one line (comment lines dropped), so the plan is one command.
SCRIPT="$(grep -v '^--' "${HERE}/replay-dead-letters.lua" | tr '\n' ' ')"
COMMAND=("${REDIS_CLI_CMD[@]}" EVAL "${SCRIPT}" 2 "${DEAD_LETTER_STREAM}" "${EVENT_STREAM}" "${BATCH}")

if [[ ${DRY_RUN} -eq 1 ]]; then
  print_cmd "${COMMAND[@]}"
  exit 0
fi

total=0
while :; do
  reply="$(run_capture "${COMMAND[@]}")"
  moved="${reply//[[:space:]]/}"
  if ! [[ ${moved} =~ ^[0-9]+$ ]]; then
    echo "replay-dead-letters.sh: Redis answered '${reply}', not a count; is it reachable?" >&2
    exit 1
  fi
  total=$((total + moved))
  [[ ${moved} -eq 0 ]] && break
done
echo "replayed ${total} dead letters into ${EVENT_STREAM}"
