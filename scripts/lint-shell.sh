#!/usr/bin/env bash
# ShellCheck over every shell script of the repository (`npm run lint` runs it
# after Biome). shellcheck comes from scripts/tools.sh, which installs it or
# says how to get it.
#
#   scripts/lint-shell.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
shellcheck="$(bash scripts/tools.sh shellcheck)"
# Tracked *.sh files and the CI entry point (no extension).
mapfile -t scripts < <(git ls-files -- '*.sh' .ci/run)
if [[ ${#scripts[@]} -eq 0 ]]; then
  echo "lint-shell.sh: no shell scripts found (is this a git checkout?)" >&2
  exit 1
fi
"${shellcheck}" --external-sources --severity=style "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
