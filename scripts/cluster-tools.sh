#!/usr/bin/env bash
# Ensures the Go-built tools the cluster checks need, in the checkout's ignored
# .data/bin/, and prints the path of each one asked for (default: kustomize).
#
#   scripts/cluster-tools.sh [--dry-run] [kustomize]
#
# Pinned versions, because a rendered manifest must not change under us when a
# new release lands. kn (knative.dev/client) is not offered: the Go module proxy
# refuses that module (403), so the kn commands are checked by parsing instead.
set -euo pipefail

KUSTOMIZE_VERSION="v5.7.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${ROOT}/.data/bin"
DRY_RUN=0
TOOLS=()

for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      sed -n '2,9p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    kustomize) TOOLS+=("${arg}") ;;
    *)
      echo "cluster-tools.sh: unknown argument '${arg}' (known: --dry-run, kustomize)" >&2
      exit 2
      ;;
  esac
done
if [[ ${#TOOLS[@]} -eq 0 ]]; then
  TOOLS=(kustomize)
fi

# Prints a command (dry run) or runs it; output of real runs goes to stderr so
# that stdout carries only the tool paths.
run() {
  if [[ ${DRY_RUN} -eq 1 ]]; then
    printf '%q ' "$@" | sed 's/ $//'
    printf '\n'
  else
    "$@" >&2
  fi
}

ensure_kustomize() {
  local dest="${BIN_DIR}/kustomize-${KUSTOMIZE_VERSION}"
  if [[ ${DRY_RUN} -eq 1 || ! -x "${dest}/kustomize" ]]; then
    command -v go >/dev/null || [[ ${DRY_RUN} -eq 1 ]] || {
      echo "cluster-tools.sh: 'go' is not on PATH; install Go 1.22+ to build kustomize" >&2
      exit 1
    }
    run mkdir -p "${dest}"
    run env "GOBIN=${dest}" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
  fi
  if [[ ${DRY_RUN} -eq 0 ]]; then
    echo "${dest}/kustomize"
  fi
}

for tool in "${TOOLS[@]}"; do
  "ensure_${tool}"
done
