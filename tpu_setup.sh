#!/usr/bin/env bash
# Prepares Cloud TPU VM hosts for visual_priors: Python >= 3.11 venv, the repository, jax[tpu] + libtpu, a device check.
#
# Two ways to run it:
#   ./tpu_setup.sh --tpu NAME --zone ZONE [--project PROJECT]
#       from your own machine: copies this script (and, without REPO_URL, this checkout) to every host
#       of the slice with `gcloud compute tpus tpu-vm scp --worker=all` and runs `--host` on all of them
#       at once with `gcloud compute tpus tpu-vm ssh --worker=all`.
#   ./tpu_setup.sh --host
#       on one TPU VM host (what the first form runs on each host).
#
# Every step is skipped when it is already done, so re-running is cheap and safe:
#   1. a Python >= 3.11 interpreter (PYTHON, else python3.13/3.12/3.11/python3 on PATH, else one installed by uv);
#   2. a virtualenv in VENV_DIR (kept if it exists with a suitable Python);
#   3. the repository in REPO_DIR: `git clone REPO_URL` (then fetch + checkout REPO_REF), or the copied
#      archive of your checkout unpacked (only when the archive changed);
#   4. `pip install -e "REPO_DIR[tpu]" -f LIBTPU_INDEX` (jax[tpu] brings the libtpu matching jax), skipped
#      while pyproject.toml and the index are unchanged (a stamp file in STATE_DIR);
#   5. STATE_DIR/jax_env.sh: on a multi-host slice, JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
#      JAX_PROCESS_ID from the TPU VM metadata, so `visual_priors.models.sharding.maybe_initialize_distributed()`
#      (called by the CLI before the first mesh) runs `jax.distributed.initialize()` on every host;
#   6. the check: `jax.device_count()` after that initialisation (all hosts must run it together).
#
# Environment variables (defaults in brackets):
#   REPO_URL      git URL to clone on each host [empty: copy this checkout's HEAD with git archive]
#   REPO_REF      branch, tag or commit to check out after cloning [main]
#   REPO_DIR      the repository on each host [$HOME/visual_priors]
#   VENV_DIR      the virtualenv on each host [$HOME/visual_priors_venv]
#   STATE_DIR     stamps and jax_env.sh on each host [$HOME/.visual_priors]
#   PYTHON        the interpreter for the venv [first Python >= 3.11 on PATH, else uv's 3.11]
#   LIBTPU_INDEX  pip --find-links page with libtpu wheels [https://storage.googleapis.com/jax-releases/libtpu_releases.html]
#   JAX_PORT      coordinator port of jax.distributed on worker 0 [8476]
#   SKIP_CHECK=1  skip the device check (step 6)
#   DRY_RUN=1     print every command that would change something instead of running it (read-only
#                 checks still run, so the printed plan shows what a real run would skip)
set -euo pipefail

# Host paths given in the environment are forwarded to the hosts; unset ones default to each host's $HOME.
declare -A GIVEN=([REPO_DIR]="${REPO_DIR:-}" [VENV_DIR]="${VENV_DIR:-}" [STATE_DIR]="${STATE_DIR:-}" [PYTHON]="${PYTHON:-}")
LIBTPU_INDEX="${LIBTPU_INDEX:-https://storage.googleapis.com/jax-releases/libtpu_releases.html}"
REPO_URL="${REPO_URL:-}"
REPO_REF="${REPO_REF:-main}"
REPO_DIR="${REPO_DIR:-$HOME/visual_priors}"
VENV_DIR="${VENV_DIR:-$HOME/visual_priors_venv}"
STATE_DIR="${STATE_DIR:-$HOME/.visual_priors}"
JAX_PORT="${JAX_PORT:-8476}"
DRY_RUN="${DRY_RUN:-0}"
SKIP_CHECK="${SKIP_CHECK:-0}"
ARCHIVE_NAME="visual_priors_src.tar.gz"
METADATA_URL="http://metadata.google.internal/computeMetadata/v1/instance/attributes"

usage() {
  sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

log() { printf '[tpu_setup] %s\n' "$*" >&2; }
die() { printf '[tpu_setup] error: %s\n' "$*" >&2; exit 2; }

# Runs a command, or prints it (shell-quoted) under DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == "1" ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

python_is_recent() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 && python_is_recent "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

setup_python() {
  if PYTHON_BIN="$(find_python)"; then
    log "python: $PYTHON_BIN ($("$PYTHON_BIN" -c 'import platform; print(platform.python_version())'))"
    return
  fi
  [[ -n "${PYTHON:-}" ]] && die "PYTHON=$PYTHON is not a Python >= 3.11"
  log "python: no Python >= 3.11 on PATH; installing one with uv"
  run python3 -m pip install --user --quiet uv
  run python3 -m uv python install 3.11
  if [[ "$DRY_RUN" == "1" ]]; then
    PYTHON_BIN="python3.11"
  else
    PYTHON_BIN="$(python3 -m uv python find 3.11)"
  fi
}

setup_venv() {
  if [[ -x "$VENV_DIR/bin/python" ]] && python_is_recent "$VENV_DIR/bin/python"; then
    log "venv: $VENV_DIR exists, kept"
    return
  fi
  run "$PYTHON_BIN" -m venv "$VENV_DIR"
  run "$VENV_DIR/bin/python" -m pip install --quiet --upgrade "pip>=25"
}

file_sha256() { sha256sum "$1" | cut -d' ' -f1; }

setup_repo() {
  if [[ -n "$REPO_URL" ]]; then
    if [[ -d "$REPO_DIR/.git" ]]; then
      log "repo: $REPO_DIR is a clone; fetching and checking out $REPO_REF"
      run git -C "$REPO_DIR" fetch --quiet origin
    else
      run git clone --quiet "$REPO_URL" "$REPO_DIR"
    fi
    run git -C "$REPO_DIR" checkout --quiet "$REPO_REF"
    # A branch follows its remote; a tag or commit stays where checkout put it.
    if [[ "$DRY_RUN" == "1" ]] || git -C "$REPO_DIR" symbolic-ref -q HEAD >/dev/null; then
      run git -C "$REPO_DIR" merge --quiet --ff-only "origin/$REPO_REF"
    fi
    return
  fi
  local archive="$HOME/$ARCHIVE_NAME"
  if [[ ! -f "$archive" ]]; then
    [[ "$DRY_RUN" == "1" ]] || die "no REPO_URL and no copied checkout at $archive (run from your machine with --tpu)"
    log "repo: would unpack $archive into $REPO_DIR"
    return
  fi
  local digest
  digest="$(file_sha256 "$archive")"
  if [[ -f "$STATE_DIR/repo.sha256" && "$(cat "$STATE_DIR/repo.sha256")" == "$digest" && -d "$REPO_DIR" ]]; then
    log "repo: $REPO_DIR already holds the copied checkout ($digest)"
    return
  fi
  run rm -rf "$REPO_DIR.new"
  run mkdir -p "$REPO_DIR.new" "$STATE_DIR"
  run tar -xzf "$archive" -C "$REPO_DIR.new"
  run rm -rf "$REPO_DIR"
  run mv "$REPO_DIR.new" "$REPO_DIR"
  if [[ "$DRY_RUN" == "1" ]]; then
    log "repo: would record $digest in $STATE_DIR/repo.sha256"
  else
    printf '%s\n' "$digest" > "$STATE_DIR/repo.sha256"
  fi
}

install_package() {
  local pyproject="$REPO_DIR/pyproject.toml" stamp="$STATE_DIR/install.stamp" wanted
  if [[ -f "$pyproject" ]]; then
    wanted="$(file_sha256 "$pyproject") $LIBTPU_INDEX $VENV_DIR"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
      log "install: visual_priors[tpu] already installed for this pyproject.toml"
      return
    fi
  else
    [[ "$DRY_RUN" == "1" ]] || die "$pyproject not found; the repository step did not complete"
    wanted="(pyproject.toml of the new checkout) $LIBTPU_INDEX $VENV_DIR"
  fi
  run "$VENV_DIR/bin/python" -m pip install --quiet -e "${REPO_DIR}[tpu]" -f "$LIBTPU_INDEX"
  if [[ "$DRY_RUN" == "1" ]]; then
    log "install: would record the stamp in $stamp"
  else
    mkdir -p "$STATE_DIR"
    printf '%s\n' "$wanted" > "$stamp"
  fi
}

metadata() { curl -sf -H 'Metadata-Flavor: Google' "$METADATA_URL/$1"; }

# jax_env.sh: the explicit jax.distributed settings of this host (empty on a single-host slice).
write_jax_env() {
  local env_file="$STATE_DIR/jax_env.sh"
  if [[ "$DRY_RUN" == "1" ]]; then
    log "jax env: would read agent-worker-number and worker-network-endpoints from $METADATA_URL"
    log "jax env: would write $env_file (JAX_COORDINATOR_ADDRESS=<worker 0>:$JAX_PORT, JAX_NUM_PROCESSES, JAX_PROCESS_ID)"
    return
  fi
  local worker endpoints
  worker="$(metadata agent-worker-number)" || die "cannot read the TPU VM metadata (is this a Cloud TPU VM?)"
  endpoints="$(metadata worker-network-endpoints)" || die "cannot read worker-network-endpoints from the metadata"
  # Entries look like "<id>:<name>:<ip>", one per host, comma separated, worker 0 first.
  local -a hosts
  IFS=',' read -r -a hosts <<< "$endpoints"
  local count="${#hosts[@]}" coordinator
  coordinator="$(printf '%s' "${hosts[0]}" | cut -d: -f3)"
  mkdir -p "$STATE_DIR"
  {
    printf '# Written by tpu_setup.sh: jax.distributed settings of worker %s of %s.\n' "$worker" "$count"
    if (( count > 1 )); then
      printf 'export JAX_COORDINATOR_ADDRESS=%q\n' "$coordinator:$JAX_PORT"
      printf 'export JAX_NUM_PROCESSES=%q\n' "$count"
      printf 'export JAX_PROCESS_ID=%q\n' "$worker"
    fi
  } > "$env_file.tmp"
  mv "$env_file.tmp" "$env_file"
  log "jax env: worker $worker of $count host(s) -> $env_file"
}

check_devices() {
  if [[ "$SKIP_CHECK" == "1" ]]; then
    log "check: skipped (SKIP_CHECK=1)"
    return
  fi
  local code
  code='from visual_priors.models import sharding; sharding.maybe_initialize_distributed(); import jax; '
  code+='print(f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local, '
  code+='{jax.device_count()} global devices ({jax.devices()[0].device_kind})")'
  if [[ "$DRY_RUN" == "1" ]]; then
    printf "+ . %q && %q -c '%s'\n" "$STATE_DIR/jax_env.sh" "$VENV_DIR/bin/python" "$code"
  else
    # shellcheck source=/dev/null
    (. "$STATE_DIR/jax_env.sh" && "$VENV_DIR/bin/python" -c "$code")
  fi
}

setup_host() {
  log "host $(hostname): repo $REPO_DIR, venv $VENV_DIR, state $STATE_DIR"
  setup_python
  setup_venv
  setup_repo
  install_package
  write_jax_env
  check_devices
  log "done"
}

setup_remote() {
  local tpu="$1" zone="$2" project="$3"
  [[ -n "$tpu" && -n "$zone" ]] || die "--tpu and --zone are required (see --help)"
  if [[ "$DRY_RUN" != "1" ]]; then
    command -v gcloud >/dev/null 2>&1 || die "gcloud not found; install the Google Cloud CLI"
  fi
  local -a where=(--zone="$zone" --worker=all)
  [[ -n "$project" ]] && where+=(--project="$project")
  local script_dir
  script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if [[ -z "$REPO_URL" ]]; then
    local archive="/tmp/$ARCHIVE_NAME"
    [[ "$DRY_RUN" == "1" ]] || archive="$(mktemp -d)/$ARCHIVE_NAME"
    log "copying this checkout's HEAD ($(git -C "$script_dir" rev-parse --short HEAD)) to every host"
    run git -C "$script_dir" archive --format=tar.gz -o "$archive" HEAD
    run gcloud compute tpus tpu-vm scp "$archive" "$tpu:~/$ARCHIVE_NAME" "${where[@]}"
  fi
  run gcloud compute tpus tpu-vm scp "$script_dir/tpu_setup.sh" "$tpu:~/tpu_setup.sh" "${where[@]}"
  # The remote side expands its own $HOME: pass the settings as given, quoted for the remote shell.
  local settings="" name
  for name in REPO_URL REPO_REF LIBTPU_INDEX JAX_PORT SKIP_CHECK; do
    settings+="$name=$(printf '%q' "${!name}") "
  done
  for name in REPO_DIR VENV_DIR STATE_DIR PYTHON; do
    [[ -n "${GIVEN[$name]}" ]] && settings+="$name=$(printf '%q' "${GIVEN[$name]}") "
  done
  run gcloud compute tpus tpu-vm ssh "$tpu" "${where[@]}" --command="${settings}bash ~/tpu_setup.sh --host"
}

main() {
  local mode="" tpu="" zone="" project=""
  while (( $# )); do
    case "$1" in
      --host) mode=host ;;
      --tpu) tpu="${2:?--tpu needs a value}"; mode=remote; shift ;;
      --tpu=*) tpu="${1#*=}"; mode=remote ;;
      --zone) zone="${2:?--zone needs a value}"; shift ;;
      --zone=*) zone="${1#*=}" ;;
      --project) project="${2:?--project needs a value}"; shift ;;
      --project=*) project="${1#*=}" ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  case "$mode" in
    host) setup_host ;;
    remote) setup_remote "$tpu" "$zone" "$project" ;;
    *) usage >&2; die "give --host (on a TPU VM) or --tpu NAME --zone ZONE (from your machine)" ;;
  esac
}

main "$@"
