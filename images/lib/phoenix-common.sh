#!/usr/bin/env bash
# Shared library sourced by every Phoenix feature and app script.
#
# Guest-side contract (phoenix/transport/base.py):
#   PHOENIX_ENV      /etc/phoenix/context.env   the context as PHX_* shell assignments
#   PHOENIX_CONTEXT  /etc/phoenix/context.json  the same context as JSON
#   PHOENIX_SECRETS  /etc/phoenix/secrets       one 0600 file per secret
#   PHOENIX_LIB      /opt/phoenix/lib/phoenix-common.sh (this file)
#
# Conventions for scripts:
#   * every message goes through phx_log/phx_warn/phx_die, prefixed with the feature name;
#   * every state change is reported with phx_changed, and the script ends with phx_finish,
#     which says "<feature>: nothing to change" when a run changed nothing (idempotence);
#   * secret values are read with phx_secret into a variable and handed to programs on stdin
#     or in 0600 files, never as arguments (arguments are visible in ps and /proc/*/cmdline).
#   * a script ends with `if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi` so tests can
#     source it and call its functions.
set -Eeuo pipefail
# The last command of a pipeline runs in this shell, so `printf ... | phx_write_file ...` counts its
# changes (scripts run non-interactively: no job control, as lastpipe needs).
shopt -s lastpipe
# A failure inside $(...) stops the substitution too (without it, `x="$(false; echo ok)"` gives "ok").
shopt -s inherit_errexit

: "${PHOENIX_ENV:=/etc/phoenix/context.env}"
: "${PHOENIX_CONTEXT:=/etc/phoenix/context.json}"
: "${PHOENIX_SECRETS:=/etc/phoenix/secrets}"
# The name used in log lines: the sourcing script's file name without .sh, unless set before.
: "${PHOENIX_FEATURE:=$(basename "${BASH_SOURCE[1]:-$0}" .sh)}"

_PHX_CHANGES=0
# Temporary files and directories of this run (phx_tmpfile, phx_tmpdir), removed on exit and interrupt.
_PHX_TMP=()
_PHX_APT_UPDATED=0
# Set by phx_write_file: 1 when the last call changed the file.
PHX_FILE_CHANGED=0

# ---------------------------------------------------------------------------------------------
# Logging

phx_log() { printf '%s: %s\n' "$PHOENIX_FEATURE" "$*"; }
phx_warn() { printf '%s: WARNING: %s\n' "$PHOENIX_FEATURE" "$*" >&2; }
phx_die() {
    printf '%s: ERROR: %s\n' "$PHOENIX_FEATURE" "$*" >&2
    # said once: the ERR trap of a shell whose $(...) this was stays quiet (a subshell cannot set its variables)
    [[ -z "$_PHX_RUN_DIR" ]] || : >"$_PHX_RUN_DIR/died" 2>/dev/null || true
    exit 1
}

# phx_on_err STATUS LINE FILE COMMAND: the ERR trap: name what failed, so a failure under errexit (in a
# function, a pipeline or a command substitution) never ends a run without saying why.
phx_on_err() {
    [[ -z "$_PHX_RUN_DIR" || ! -e "$_PHX_RUN_DIR/died" ]] || return 0     # phx_die has said why
    printf '%s: ERROR: command failed (exit %s) at %s line %s: %s\n' \
        "$PHOENIX_FEATURE" "$1" "${3##*/}" "$2" "$4" >&2
}

# phx_cleanup: remove this run's temporary files and directories (the EXIT trap).
phx_cleanup() {
    local p
    for p in "${_PHX_TMP[@]}"; do
        [[ -n "$p" ]] && rm -rf -- "$p"
    done
    _PHX_TMP=()
}

# phx_tmpfile VAR [TEMPLATE] / phx_tmpdir VAR [TEMPLATE]: make a temporary file (directory), store its
# path in VAR and remove it when the script ends, fails or is interrupted. They set a variable instead of
# printing: a $(...) runs in a subshell, where the registration would be lost.
phx_tmpfile() {
    local _phx_t
    _phx_t="$(mktemp ${2:+"$2"})"
    _PHX_TMP+=("$_phx_t")
    printf -v "$1" '%s' "$_phx_t"
}

phx_tmpdir() {
    local _phx_t
    _phx_t="$(mktemp -d ${2:+"$2"})"
    _PHX_TMP+=("$_phx_t")
    printf -v "$1" '%s' "$_phx_t"
}

# This run's private directory (removed at exit): phx_die leaves a mark in it.
_PHX_RUN_DIR="$(mktemp -d 2>/dev/null || true)"
[[ -z "$_PHX_RUN_DIR" ]] || _PHX_TMP+=("$_PHX_RUN_DIR")

trap 'phx_on_err "$?" "$LINENO" "${BASH_SOURCE[0]:-$0}" "$BASH_COMMAND"' ERR
trap phx_cleanup EXIT
trap 'phx_cleanup; trap - INT; kill -INT "$$"' INT
trap 'phx_cleanup; exit 143' TERM

# phx_changed MESSAGE: log a change to the system and count it.
phx_changed() {
    _PHX_CHANGES=$((_PHX_CHANGES + 1))
    phx_log "$*"
}

phx_change_count() { printf '%s\n' "$_PHX_CHANGES"; }

# phx_finish: the last line of every script: what the run did.
phx_finish() {
    if ((_PHX_CHANGES == 0)); then
        phx_log "nothing to change"
    else
        phx_log "done ($_PHX_CHANGES change(s))"
    fi
}

# ---------------------------------------------------------------------------------------------
# Context

# phx_load_context: source $PHOENIX_ENV (PHX_* variables). Missing file: an error.
phx_load_context() {
    [[ -r "$PHOENIX_ENV" ]] || phx_die "context file $PHOENIX_ENV not found"
    # shellcheck source=/dev/null  # generated per guest by phoenix.context.to_env
    source "$PHOENIX_ENV"
}

# phx_ctx KEY [DEFAULT]: the value of PHX_<KEY> (vllm_model -> PHX_VLLM_MODEL), or DEFAULT when empty.
phx_ctx() {
    local var="PHX_${1^^}"
    var="${var//[^A-Z0-9_]/_}"
    local value="${!var:-}"
    printf '%s\n' "${value:-${2:-}}"
}

# phx_ctx_list KEY: a comma-joined list value, one item a line (nothing for an empty list).
phx_ctx_list() {
    local value item
    value="$(phx_ctx "$1")"
    [[ -n "$value" ]] || return 0
    local -a items
    IFS=, read -r -a items <<<"$value"
    for item in "${items[@]}"; do
        [[ -n "$item" ]] && printf '%s\n' "$item"
    done
    return 0
}

# phx_bool VALUE: true for true/yes/1/on (any case).
phx_bool() {
    case "${1,,}" in
        true | yes | 1 | on) return 0 ;;
        *) return 1 ;;
    esac
}

# phx_ctx_json_array JQ_PATH: the items of a JSON array of strings from $PHOENIX_CONTEXT, each ended by
# a NUL byte (items may hold commas, spaces or newlines). Falls back to the comma-joined PHX_ variable
# named in $2 when jq or the JSON file is missing.
phx_ctx_json_array() {
    local path="$1" fallback="${2:-}"
    if command -v jq >/dev/null 2>&1 && [[ -r "$PHOENIX_CONTEXT" ]]; then
        jq -j "($path // [])[] | tostring, \"\\u0000\"" "$PHOENIX_CONTEXT"
    elif [[ -n "$fallback" ]]; then
        local item
        while IFS= read -r item; do printf '%s\0' "$item"; done < <(phx_ctx_list "$fallback")
    fi
}

# ---------------------------------------------------------------------------------------------
# Secrets

phx_secret_path() { printf '%s/%s\n' "$PHOENIX_SECRETS" "$1"; }

# phx_has_secret NAME: the secret file exists and is not empty.
phx_has_secret() { [[ -s "$(phx_secret_path "$1")" ]]; }

# phx_secret NAME: print the secret (first line, without the newline) for capture in a variable:
#   token="$(phx_secret hf_token)"
# Never log it; hand it to programs on stdin or in a 0600 file.
phx_secret() {
    local path
    path="$(phx_secret_path "$1")"
    [[ -r "$path" ]] || phx_die "secret $1 is not available ($path missing)"
    local value
    IFS= read -r value <"$path" || [[ -n "$value" ]] || phx_die "secret $1 is empty"
    value="${value%$'\r'}"
    [[ -n "$value" ]] || phx_die "secret $1 is empty"
    printf '%s' "$value"
}

# ---------------------------------------------------------------------------------------------
# Files

# phx_write_file PATH MODE [OWNER[:GROUP]]: write stdin to PATH when the content differs, then
# make sure of mode and owner. Sets PHX_FILE_CHANGED=1 when anything changed. Content is never logged.
phx_write_file() {
    local path="$1" mode="$2" owner="${3:-}" tmp
    PHX_FILE_CHANGED=0
    if [[ -n "$owner" && "$owner" != *:* ]]; then
        owner="$owner:$(id -gn "$owner")"
    fi
    mkdir -p "$(dirname "$path")"
    phx_tmpfile tmp "$path.phx.XXXXXX"
    chmod 600 "$tmp"
    cat >"$tmp"
    if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
    else
        chmod "$mode" "$tmp"
        [[ -z "$owner" ]] || chown "$owner" "$tmp"
        mv -f "$tmp" "$path"
        PHX_FILE_CHANGED=1
        phx_changed "wrote $path"
        return 0
    fi
    if [[ "$(stat -c %a "$path")" != "$(printf '%o' "$((8#$mode))")" ]]; then
        chmod "$mode" "$path"
        PHX_FILE_CHANGED=1
        phx_changed "set mode $mode on $path"
    fi
    if [[ -n "$owner" ]]; then
        if [[ "$(stat -c %U:%G "$path")" != "$owner" ]]; then
            chown "$owner" "$path"
            PHX_FILE_CHANGED=1
            phx_changed "set owner $owner on $path"
        fi
    fi
}

# phx_file_changed: the last phx_write_file changed something.
phx_file_changed() { ((PHX_FILE_CHANGED)); }

# phx_remove_file PATH: remove PATH when it exists.
phx_remove_file() {
    if [[ -e "$1" || -L "$1" ]]; then
        rm -f "$1"
        phx_changed "removed $1"
    fi
}

# phx_ensure_dir PATH [MODE]
phx_ensure_dir() {
    if [[ ! -d "$1" ]]; then
        mkdir -p "$1"
        phx_changed "created directory $1"
    fi
    if [[ -n "${2:-}" && "$(stat -c %a "$1")" != "$(printf '%o' "$((8#$2))")" ]]; then
        chmod "$2" "$1"
        phx_changed "set mode $2 on $1"
    fi
}

# ---------------------------------------------------------------------------------------------
# Packages

# phx_pkg_installed NAME: the Debian package is installed (dpkg status "install ok installed").
phx_pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# phx_apt_missing PKG...: the packages that are not installed, one a line.
phx_apt_missing() {
    local pkg
    for pkg in "$@"; do
        phx_pkg_installed "$pkg" || printf '%s\n' "$pkg"
    done
    return 0
}

# phx_apt_update: apt-get update, once per script run.
phx_apt_update() {
    ((_PHX_APT_UPDATED)) && return 0
    phx_log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
    _PHX_APT_UPDATED=1
}

# phx_apt_sources_changed: the next phx_apt_install runs apt-get update again.
phx_apt_sources_changed() { _PHX_APT_UPDATED=0; }

# phx_apt_install PKG...: install the packages that are missing (nothing when all are installed).
phx_apt_install() {
    local -a missing
    mapfile -t missing < <(phx_apt_missing "$@")
    ((${#missing[@]})) || return 0
    phx_apt_update
    phx_log "installing ${missing[*]}"
    # The lock timeout waits for a first boot's apt-daily/unattended-upgrades run instead of failing.
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
    phx_changed "installed ${missing[*]}"
}

# ---------------------------------------------------------------------------------------------
# Services

# phx_has_systemd: systemd is PID 1 and running (sd_booted(3)); false in a chroot or a build.
phx_has_systemd() {
    [[ -d /run/systemd/system ]] && [[ "$(cat /proc/1/comm 2>/dev/null || true)" == systemd ]]
}

# phx_unit_wanted_by UNIT: the targets in the [Install] WantedBy= lines of UNIT's file.
phx_unit_wanted_by() {
    local f
    f="$(phx_unit_path "$1")" || return 1
    sed -nE 's/^WantedBy=//p' "$f" | tr ' ' '\n' | sed '/^$/d'
}

# phx_service_enable UNIT: enable UNIT at boot. Works without a running systemd (systemctl
# enables offline; without systemctl at all, the WantedBy symlinks are made as systemctl would).
phx_service_enable() {
    local unit="$1"
    if command -v systemctl >/dev/null 2>&1; then
        if [[ "$(systemctl is-enabled "$unit" 2>/dev/null || true)" != enabled ]]; then
            systemctl enable "$unit" >/dev/null 2>&1 || phx_die "cannot enable $unit"
            phx_changed "enabled $unit"
        fi
        return 0
    fi
    local target file
    file="$(phx_unit_path "$unit")" || phx_die "no unit file for $unit"
    while IFS= read -r target; do
        if [[ ! -L "/etc/systemd/system/$target.wants/$unit" ]]; then
            mkdir -p "/etc/systemd/system/$target.wants"
            ln -sfn "$file" "/etc/systemd/system/$target.wants/$unit"
            phx_changed "enabled $unit ($target)"
        fi
    done < <(phx_unit_wanted_by "$unit")
}

phx_unit_path() {
    local f
    for f in "/etc/systemd/system/$1" "/lib/systemd/system/$1" "/usr/lib/systemd/system/$1"; do
        [[ -f "$f" ]] && { printf '%s\n' "$f"; return 0; }
    done
    return 1
}

# phx_service_start UNIT [restart]: start UNIT (restart it when $2 is "restart") if systemd runs;
# otherwise say it is enabled but not started.
phx_service_start() {
    local unit="$1" restart="${2:-}"
    if ! phx_has_systemd; then
        phx_log "systemd is not running (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): $unit enabled but not started"
        return 0
    fi
    if [[ "$restart" == restart ]]; then
        systemctl restart "$unit"
        phx_changed "restarted $unit"
    elif ! systemctl is-active --quiet "$unit"; then
        systemctl start "$unit"
        phx_changed "started $unit"
    fi
}

# phx_wait_for CMD... : run CMD every 2 s until it succeeds or PHX_WAIT_TIMEOUT seconds pass.
phx_wait_for() {
    local timeout="${PHX_WAIT_TIMEOUT:-120}" start=$SECONDS
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - start < timeout)) || return 1
        sleep "${PHX_WAIT_INTERVAL:-2}"
    done
}

# ---------------------------------------------------------------------------------------------
# Docker registries: log in per use, never saved

# phx_docker_login_user SECRET [USER] / phx_docker_login_token SECRET: the parts of a docker_token secret,
# "user:token" or a bare token plus a user (docker_login_user).
phx_docker_login_user() {
    if [[ "$1" == *:* ]]; then printf '%s\n' "${1%%:*}"; else printf '%s\n' "${2:-}"; fi
}

phx_docker_login_token() { printf '%s' "${1#*:}"; }

# phx_docker_login DIR: log in to Docker Hub with the docker_token secret, into the client config directory DIR
# (a DOCKER_CONFIG). False when there is no token.
phx_docker_login() {
    local dir="$1" secret user
    phx_has_secret docker_token || return 1
    secret="$(phx_secret docker_token)"
    user="$(phx_docker_login_user "$secret" "$(phx_ctx docker_login_user)")"
    [[ -n "$user" ]] || phx_die "docker_token has no user: write USERNAME:TOKEN or set docker_login_user"
    # printf is a builtin: the token goes through a pipe, never into a process's arguments.
    phx_docker_login_token "$secret" | DOCKER_CONFIG="$dir" docker login --username "$user" --password-stdin >/dev/null ||
        phx_die "docker login as $user failed (docker_token)"
}

# phx_docker_pull IMAGE: pull IMAGE, logged in with the docker_token secret when there is one. The login goes
# to a temporary DOCKER_CONFIG removed when the script ends: no credentials stay in the guest or its snapshots.
phx_docker_pull() {
    local image="$1" cfg
    phx_tmpdir cfg
    if ! phx_docker_login "$cfg"; then
        docker pull -q "$image" >/dev/null
        return 0
    fi
    DOCKER_CONFIG="$cfg" docker pull -q "$image" >/dev/null
    DOCKER_CONFIG="$cfg" docker logout >/dev/null 2>&1 || true
}

# phx_container_state NAME: "IMAGE SPEC RUNNING" of the Docker container NAME (SPEC: its phoenix.spec label, the
# hash of the arguments it was made with), nothing when there is none.
phx_container_state() {
    docker inspect -f '{{.Config.Image}} {{index .Config.Labels "phoenix.spec"}} {{.State.Running}}' \
        "$1" 2>/dev/null || true
}

# phx_container_decide STATE IMAGE HASH: what a container in STATE needs to run IMAGE made with the arguments
# hashed as HASH: nothing | start | create | replace (a container made by hand has no label: replaced).
phx_container_decide() {
    local state="$1" image="$2" hash="$3" cur_image cur_hash running
    if [[ -z "$state" ]]; then
        printf 'create\n'
        return 0
    fi
    read -r cur_image cur_hash running <<<"$state"
    if [[ "$cur_image" != "$image" || "$cur_hash" != "$hash" ]]; then
        printf 'replace\n'
    elif [[ "$running" != true ]]; then
        printf 'start\n'
    else
        printf 'nothing\n'
    fi
}

# phx_first_line: the first line of stdin, after reading all of it. Under pipefail, `cmd | head -n1` (or
# `| grep -q`) fails with 141 whenever cmd writes after the reader has gone (SIGPIPE): read everything.
phx_first_line() {
    local first="" rest
    if IFS= read -r first || [[ -n "$first" ]]; then
        printf '%s\n' "$first"
    fi
    while IFS= read -r rest; do :; done
    return 0
}

# phx_os_id / phx_os_codename: from the context, else from /etc/os-release.
phx_os_id() {
    local id
    id="$(phx_ctx os_id)"
    if [[ -z "$id" || "$id" == unknown ]]; then
        id="$(. /etc/os-release && printf '%s' "$ID")"
    fi
    printf '%s\n' "$id"
}

phx_os_codename() { (. /etc/os-release && printf '%s\n' "${VERSION_CODENAME:-}"); }

phx_arch() { dpkg --print-architecture; }
