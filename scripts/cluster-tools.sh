#!/usr/bin/env bash
# Ensures the Go-built tools the cluster checks need, in the checkout's ignored
# .data/bin/, and prints the path of each one asked for (default: kustomize).
#
#   scripts/cluster-tools.sh [--dry-run] [kustomize] [k6] [actionlint]
#
# kustomize renders the manifests; k6's `inspect` reads k6/spike-test.js and
# prints the options it derives from the spike profile, without sending load;
# actionlint checks the end-to-end workflow (.github/workflows/e2e.yaml).
# Pinned versions, because a rendered manifest must not change under us when a
# new release lands. kn (knative.dev/client) is not offered: the Go module proxy
# refuses that module (403), so the kn commands are checked by parsing instead.
set -euo pipefail

KUSTOMIZE_VERSION="v5.7.1"
K6_VERSION="v1.8.1"
ACTIONLINT_VERSION="v1.7.12"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../cluster/lib.sh source-path=SCRIPTDIR
source "${ROOT}/cluster/lib.sh"
BIN_DIR="${ROOT}/.data/bin"
DRY_RUN=0
TOOLS=()

for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      sed -n '2,10p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    kustomize | k6 | actionlint) TOOLS+=("${arg}") ;;
    *)
      echo "cluster-tools.sh: unknown argument '${arg}' (known: --dry-run, kustomize, k6, actionlint)" >&2
      exit 2
      ;;
  esac
done
if [[ ${#TOOLS[@]} -eq 0 ]]; then
  TOOLS=(kustomize)
fi

# go_install NAME VERSION PACKAGE: one versioned folder per tool, so a pin
# change installs the new version beside the old instead of trusting it.
go_install() {
  local name="$1" version="$2" package="$3"
  local dest="${BIN_DIR}/${name}-${version}"
  if [[ ${DRY_RUN} -eq 1 || ! -x "${dest}/${name}" ]]; then
    if [[ ${DRY_RUN} -eq 0 ]] && ! command -v go >/dev/null; then
      echo "cluster-tools.sh: 'go' is not on PATH; install Go 1.23+ to build ${name}" >&2
      exit 1
    fi
    run mkdir -p "${dest}"
    run env "GOBIN=${dest}" go install "${package}@${version}"
  fi
  if [[ ${DRY_RUN} -eq 0 ]]; then
    echo "${dest}/${name}"
  fi
}

ensure_kustomize() {
  go_install kustomize "${KUSTOMIZE_VERSION}" sigs.k8s.io/kustomize/kustomize/v5
}

ensure_k6() {
  go_install k6 "${K6_VERSION}" go.k6.io/k6
}

ensure_actionlint() {
  go_install actionlint "${ACTIONLINT_VERSION}" github.com/rhysd/actionlint/cmd/actionlint
}

for tool in "${TOOLS[@]}"; do
  "ensure_${tool}"
done
