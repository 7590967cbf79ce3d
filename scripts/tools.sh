#!/usr/bin/env bash
# Ensures the tools the project's checks need and prints the path of each one
# asked for (default: kustomize). The README's commands are the only install
# path: `npm test` builds what its tests run through this script, `npm run lint`
# gets shellcheck through it.
#
#   scripts/tools.sh [--dry-run] [kustomize] [actionlint] [promtool] [prometheus] [shellcheck]
#
# kustomize renders the manifests; actionlint checks the end-to-end workflow
# (.github/workflows/e2e.yaml); promtool checks and unit-tests the alert rules
# (observability/alerts.yaml); prometheus scrapes the benchmark's functions and
# answers its report's panel queries (HTTP API only: no builtinassets tag, no
# web UI). These are built from the Go module proxy into the checkout's ignored
# .data/bin/, one versioned folder each, pinned because a check must not change
# under us when a new release lands. shellcheck is
# Debian's package (apt-get, as root) or whatever is on PATH.
# Not offered: k6 (AGPL-3.0, never built or run here; cluster users bring their own, and
# the suite checks k6/spike-test.js without it), kn (the module proxy refuses
# knative.dev/client, so the kn commands are checked by parsing instead).
set -euo pipefail

KUSTOMIZE_VERSION="v5.7.1"
ACTIONLINT_VERSION="v1.7.12"
PROMETHEUS_VERSION="v0.316.0"

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
      sed -n '2,19p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    kustomize | actionlint | promtool | prometheus | shellcheck) TOOLS+=("${arg}") ;;
    *)
      echo "tools.sh: unknown argument '${arg}' (known: --dry-run, kustomize, actionlint, promtool, prometheus, shellcheck)" >&2
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
      echo "tools.sh: 'go' is not on PATH; install Go 1.23+ to build ${name}" >&2
      exit 1
    fi
    if [[ ${DRY_RUN} -eq 0 ]]; then
      echo "tools.sh: building ${name} ${version} from the Go module proxy (one-off; a minute or more)" >&2
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

ensure_actionlint() {
  go_install actionlint "${ACTIONLINT_VERSION}" github.com/rhysd/actionlint/cmd/actionlint
}

ensure_promtool() {
  go_install promtool "${PROMETHEUS_VERSION}" github.com/prometheus/prometheus/cmd/promtool
}

ensure_prometheus() {
  go_install prometheus "${PROMETHEUS_VERSION}" github.com/prometheus/prometheus/cmd/prometheus
}

# ShellCheck is no Go module: Debian's package when this is a Debian or Ubuntu
# host and we are root, else a message saying how to get it.
ensure_shellcheck() {
  if [[ ${DRY_RUN} -eq 0 ]] && command -v shellcheck >/dev/null; then
    command -v shellcheck
    return
  fi
  if [[ ${DRY_RUN} -eq 1 ]] || { [[ ${EUID} -eq 0 ]] && command -v apt-get >/dev/null; }; then
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck
    if [[ ${DRY_RUN} -eq 0 ]]; then
      command -v shellcheck
    fi
    return
  fi
  echo "tools.sh: shellcheck is not on PATH and cannot be installed here (needs root and apt-get);" \
    "install it (apt-get install shellcheck, dnf install ShellCheck, brew install shellcheck) and retry" >&2
  exit 1
}

for tool in "${TOOLS[@]}"; do
  "ensure_${tool}"
done
