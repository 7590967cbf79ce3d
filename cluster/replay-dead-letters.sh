#!/usr/bin/env bash
# Replays the Trigger's dead letters through ingest: each entry of the stream
# "spillway:dead-letters" is posted to ingest's public endpoint as the CloudEvent
# it was (every field of its entry: id, type, source, subject, time, data,
# attributes, and its seq and key), with a replay key, so it
# passes ingest's authentication, validation, limits and idempotency again on
# its way back into "spillway:events". It is not XADDed there directly: whatever
# reached the dead-letter stream would then skip all of ingest's checks.
#
# An entry ingest accepts is deleted from the dead-letter stream. One it refuses
# (a 4xx answer) stays there and is reported, and the script ends with status 1.
# Safe to repeat or to interrupt: each post carries the Idempotency-Key
# "spillway:dead-letters/<stream id of the dead letter>", so a dead letter posted
# again before its deletion is not appended twice, and persist keys documents by
# event id.
#
#   cluster/replay-dead-letters.sh [--dry-run] [--batch N]
#
# --batch N  dead letters read per Redis call (default 100)
# Environment:
#   INGEST_URL            ingest's base URL (default http://localhost:30000, the
#                         NodePort cluster/up.sh maps to this host)
#   INGEST_API_KEY        a key of ingest's INGEST_REPLAY_KEYS, which lets a replayed
#                         copy keep its entry's seq and key (default: the first of
#                         INGEST_REPLAY_KEYS in SPILLWAY_SECRETS_ENV, default
#                         .data/cluster/secrets.env)
#   REDIS_CLI             how redis-cli is reached (default: inside the cluster's
#                         Redis pod), e.g. REDIS_CLI="redis-cli -p 6390"
#   REPLAY_MAX_RETRIES    tries per dead letter while ingest answers 429 or 503
#                         (default 10), waiting its Retry-After between tries
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "${HERE}/lib.sh"
require_linux replay-dead-letters.sh
DEAD_LETTER_STREAM="spillway:dead-letters"
BATCH=100
DRY_RUN=0
INGEST_URL="${INGEST_URL:-http://localhost:30000}"
EVENTS_URL="${INGEST_URL%/}/events"
SECRETS_ENV="${SPILLWAY_SECRETS_ENV:-.data/cluster/secrets.env}"
MAX_RETRIES="${REPLAY_MAX_RETRIES:-10}"
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
FETCH=("${REDIS_CLI_CMD[@]}" EVAL "${SCRIPT}" 1 "${DEAD_LETTER_STREAM}")
DELETE=("${REDIS_CLI_CMD[@]}" XDEL "${DEAD_LETTER_STREAM}")

# One post; the Authorization header comes from a file, so the key is in no
# command line. Arguments: the header file, the dead letter's stream id.
post_command() {
  POST=(curl --silent --show-error --max-time 30
    --output "${WORK}/answer" --dump-header "${WORK}/headers" --write-out '%{http_code}'
    --header "@$1" --header 'Content-Type: application/cloudevents+json'
    --header "Idempotency-Key: ${DEAD_LETTER_STREAM}/$2"
    --data-binary @- "${EVENTS_URL}")
}

if [[ ${DRY_RUN} -eq 1 ]]; then
  WORK='<temporary directory>'
  print_cmd "${FETCH[@]}" - "${BATCH}"
  post_command '<file holding "Authorization: Bearer <INGEST_API_KEY>">' '<dead letter id>'
  print_cmd "${POST[@]}"
  print_cmd "${DELETE[@]}" '<ids of the dead letters ingest accepted>'
  exit 0
fi

require_tools curl
KEY="${INGEST_API_KEY:-}"
if [[ -z ${KEY} && -f ${SECRETS_ENV} ]]; then
  KEY="$(sed -n 's/^INGEST_REPLAY_KEYS=//p' "${SECRETS_ENV}" | cut -d, -f1)"
fi
if [[ -z ${KEY} ]]; then
  echo "replay-dead-letters.sh: no replay key: set INGEST_API_KEY, or INGEST_REPLAY_KEYS in ${SECRETS_ENV}" >&2
  exit 1
fi
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
(
  umask 077
  printf 'Authorization: Bearer %s\n' "${KEY}" >"${WORK}/authorization"
)

replayed=0
refused=0
accepted=()

# Deletes the dead letters ingest accepted so far.
forget_accepted() {
  if [[ ${#accepted[@]} -gt 0 ]]; then
    run_capture "${DELETE[@]}" "${accepted[@]}" >/dev/null
    replayed=$((replayed + ${#accepted[@]}))
    accepted=()
  fi
}

fail() {
  forget_accepted
  echo "replay-dead-letters.sh: $1 (${replayed} replayed before that)" >&2
  exit 1
}

refuse() {
  refused=$((refused + 1))
  echo "replay-dead-letters.sh: ${DEAD_LETTER_STREAM} ${1} refused, left in place: $2" >&2
}

# Posts one CloudEvent; prints ingest's HTTP status (000: no answer).
post() {
  post_command "${WORK}/authorization" "$1"
  "${POST[@]}" <<<"$2" || true
}

cursor='-'
while :; do
  if ! reply="$(run_capture "${FETCH[@]}" "${cursor}" "${BATCH}")"; then
    fail "cannot read ${DEAD_LETTER_STREAM}; is Redis reachable?"
  fi
  [[ -z ${reply//[[:space:]]/} ]] && break
  mapfile -t items <<<"${reply}"
  if ((${#items[@]} % 2 != 0)) || ! [[ ${items[0]} =~ ^[0-9]+-[0-9]+$ ]]; then
    fail "Redis answered '${items[0]}', not dead letters; is it reachable?"
  fi
  for ((i = 0; i < ${#items[@]}; i += 2)); do
    id="${items[i]}"
    event="${items[i + 1]}"
    cursor="${id}"
    if [[ ${event} == 'invalid: '* ]]; then
      refuse "${id}" "${event#invalid: }"
      continue
    fi
    for ((try = 1; ; try++)); do
      status="$(post "${id}" "${event}")"
      [[ ${status} == 429 || ${status} == 503 ]] || break
      ((try < MAX_RETRIES)) || fail "ingest still answers ${status} after ${try} tries"
      wait_s="$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "${WORK}/headers")"
      sleep "$((${wait_s:-1} > 30 ? 30 : ${wait_s:-1}))"
    done
    case "${status}" in
      2??) accepted+=("${id}") ;;
      401) fail "ingest refused the API key (401): set INGEST_API_KEY" ;;
      403) grep -q replay_forbidden "${WORK}/answer" &&
        fail "the key is not one of ingest's INGEST_REPLAY_KEYS (403 replay_forbidden): set INGEST_API_KEY to one"
        refuse "${id}" "ingest answered 403 $(head -c 300 "${WORK}/answer")" ;;
      4??) refuse "${id}" "ingest answered ${status} $(head -c 300 "${WORK}/answer")" ;;
      000) fail "no answer from ingest at ${EVENTS_URL}" ;;
      *) fail "ingest answered ${status} $(head -c 300 "${WORK}/answer")" ;;
    esac
  done
  forget_accepted
done

echo "replayed ${replayed} dead letters through ingest (${EVENTS_URL})"
if [[ ${refused} -gt 0 ]]; then
  echo "replay-dead-letters.sh: ${refused} refused; they stay in ${DEAD_LETTER_STREAM}" >&2
  exit 1
fi
