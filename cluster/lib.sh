# shellcheck shell=bash
# Shared by the cluster scripts (sourced, not run). A script sets DRY_RUN=1 for
# --dry-run; then `run` prints each command, one line each, in order, quoted so
# that the line can be pasted into a shell, and runs nothing.

DRY_RUN="${DRY_RUN:-0}"

# Quotes one word for a POSIX shell, only when it needs it.
shell_quote() {
  local word="$1"
  if [[ -n ${word} && ${word} =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "${word}"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

print_cmd() {
  local line="" word
  for word in "$@"; do
    line+="${line:+ }$(shell_quote "${word}")"
  done
  printf '%s\n' "${line}"
}

# Runs a command (echoed to stderr with "+ "), or prints it in a dry run. The
# command's own output goes to stderr: stdout is kept for the script's result.
run() {
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd "$@"
  else
    printf '+ %s\n' "$(print_cmd "$@")" >&2
    "$@" >&2
  fi
}

# Like run, but the command's stdout is the caller's (for values it captures).
run_capture() {
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd "$@"
  else
    printf '+ %s\n' "$(print_cmd "$@")" >&2
    "$@"
  fi
}

# The cluster scripts support Linux hosts, WSL2 included (cluster/README.md,
# "What you need"): they use GNU tools and Linux's sysctls. Anywhere else they
# stop before doing anything. Argument: the script's name, for the message.
require_linux() {
  local system
  system="$(uname -s)"
  if [[ ${system} != Linux ]]; then
    echo "$1: the cluster scripts support Linux hosts only (WSL2 included); this host is ${system}." \
      "Run them on a Linux machine or in WSL2 (cluster/README.md, 'What you need')." >&2
    exit 1
  fi
}

# Fails fast, naming what is missing, when a required tool is not on PATH.
require_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "missing tools: ${missing[*]} (see cluster/README.md, 'What you need')" >&2
    exit 1
  fi
}
