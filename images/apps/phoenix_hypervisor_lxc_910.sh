#!/usr/bin/env bash
# @phoenix summary: Portainer Server (HTTPS, persistent data, admin password from the secret)
# @phoenix requires: nesting
# @phoenix requires: keyctl
# @phoenix requires-feature: docker
# @phoenix secret: portainer_password
# @phoenix secret: docker_token optional
#
# Context: PHX_PORTAINER_VERSION, PHX_PORTAINER_PORT (host HTTPS port), PHX_PORTAINER_DATA_DIR
#          (a persistent bind mount, mounted at /data in the Portainer container).
# The admin password is copied from the secret into a 0600 file that the container reads with
# --admin-password-file; it never appears on a command line. Portainer uses it only when it
# initialises an empty data directory.
# Idempotent: a container with the same image, ports and mounts (the phoenix.spec label) is kept; an image that is
# present is not pulled (a pull logs in per use when docker_token is set, and saves no login).
# Before the layer counts as done: Portainer is 2.33.5 LTS or newer (older ones cannot talk to Docker 29, API 1.44,
# yet /api/system/status answers), the data directory belongs to the container's root (a bind mount of an
# unprivileged container must be owned by the mapped uid on the host), and an admin login lists the containers of
# the local environment (created at start with -H unix:///var/run/docker.sock).
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

PORTAINER_NAME=portainer
PORTAINER_PASSWORD_FILE="${PORTAINER_PASSWORD_FILE:-/etc/phoenix/portainer/admin_password}"
PORTAINER_PASSWORD_IN_CONTAINER=/run/secrets/portainer_admin_password
PORTAINER_MIN_VERSION=2.33.5
PORTAINER_DEFAULT_VERSION=2.33.5
PORTAINER_AUTH_HEADER=""

portainer_image() { printf 'portainer/portainer-ce:%s\n' "$1"; }

# portainer_spec IMAGE PORT DATA_DIR PASSWORD_FILE: the container's arguments without the label,
# one a line (what the label's hash covers).
portainer_spec() {
    local image="$1" port="$2" data="$3" pwfile="$4"
    printf '%s\n' \
        --name "$PORTAINER_NAME" --restart=always \
        -p "$port:9443" \
        -v /var/run/docker.sock:/var/run/docker.sock \
        -v "$data:/data" \
        -v "$pwfile:$PORTAINER_PASSWORD_IN_CONTAINER:ro" \
        "$image" \
        -H unix:///var/run/docker.sock \
        --admin-password-file "$PORTAINER_PASSWORD_IN_CONTAINER"
}

portainer_spec_hash() { portainer_spec "$@" | sha256sum | cut -c1-16; }

# portainer_run_args IMAGE PORT DATA_DIR PASSWORD_FILE: `docker` arguments, one a line.
portainer_run_args() {
    local hash
    hash="$(portainer_spec_hash "$@")"
    printf '%s\n' run -d --label "phoenix.spec=$hash"
    portainer_spec "$@"
}

write_password_file() {
    local password
    password="$(phx_secret portainer_password)"
    [[ ${#password} -ge 12 ]] || phx_die "portainer_password is shorter than 12 characters (Portainer refuses it)"
    phx_ensure_dir "$(dirname "$PORTAINER_PASSWORD_FILE")" 0700
    local owner=""
    ((EUID != 0)) || owner=root:root
    printf '%s' "$password" | phx_write_file "$PORTAINER_PASSWORD_FILE" 0600 "$owner"
}

# portainer_version_ok VERSION: an LTS that talks to Docker 29 (API 1.44: portainer#12934), 2.33.5 or newer.
portainer_version_ok() {
    [[ "$(printf '%s\n%s\n' "$1" "$PORTAINER_MIN_VERSION" | sort -V | phx_first_line)" == "$PORTAINER_MIN_VERSION" ]]
}

# portainer_check_data_dir DIR: the bind-mounted data directory belongs to this container's root. An unmapped
# owner shows as nobody (65534): the host directory is owned by a uid outside the container's map.
portainer_check_data_dir() {
    local dir="$1" owner
    owner="$(stat -c %u "$dir")"
    if [[ "$owner" != 0 ]]; then
        if chown 0:0 "$dir" 2>/dev/null; then
            phx_changed "gave $dir to root"
        else
            phx_die "the data directory $dir belongs to uid $owner here and cannot be given to root: on the host, chown it to the container's mapped root (100000:100000 for a default unprivileged container)"
        fi
    fi
}

# portainer_api PORT METHOD PATH [BODY_FILE]: a call to the local API with the session's header file; prints the body.
portainer_api() {
    local port="$1" method="$2" path="$3" body="${4:-}"
    local -a args=(-ksS --fail-with-body --max-time 20 -X "$method" -H "@$PORTAINER_AUTH_HEADER")
    [[ -z "$body" ]] || args+=(-H 'Content-Type: application/json' --data-binary "@$body")
    curl "${args[@]}" "https://127.0.0.1:$port$path"
}

# portainer_check_local PORT: log in with the admin password, find the local Docker environment and list its
# containers (this Portainer among them). A Portainer too old for the Docker API answers /api/system/status but
# fails here.
portainer_check_local() {
    local port="$1" body out jwt id names
    phx_tmpfile body
    phx_tmpfile PORTAINER_AUTH_HEADER
    : >"$PORTAINER_AUTH_HEADER"
    jq -n --rawfile pw "$PORTAINER_PASSWORD_FILE" '{Username: "admin", Password: $pw}' >"$body"
    out="$(portainer_api "$port" POST /api/auth "$body" 2>&1)" ||
        phx_die "cannot log in to Portainer as admin with the portainer_password secret (an existing data directory keeps the password it was first set up with): $out"
    jwt="$(jq -r '.jwt // empty' <<<"$out")"
    [[ -n "$jwt" ]] || phx_die "Portainer's /api/auth gave no token"
    printf 'Authorization: Bearer %s\n' "$jwt" >"$PORTAINER_AUTH_HEADER"
    out="$(portainer_api "$port" GET /api/endpoints)" || phx_die "Portainer does not list its environments"
    id="$(jq -r '[.[] | select(.URL == "unix:///var/run/docker.sock")][0].Id // empty' <<<"$out")"
    [[ -n "$id" ]] || phx_die "Portainer has no local environment (unix:///var/run/docker.sock)"
    out="$(portainer_api "$port" GET "/api/endpoints/$id/docker/containers/json" 2>&1)" ||
        phx_die "Portainer cannot list the containers of its local environment (is Portainer too old for this Docker? $PORTAINER_MIN_VERSION or newer is needed for Docker 29): $out"
    names="$(jq -r '.[].Names[]?' <<<"$out")"
    grep -qxF "/$PORTAINER_NAME" <<<"$names" || phx_die "Portainer's local environment does not list the $PORTAINER_NAME container"
    phx_log "Portainer's local environment (id $id) loads and lists its containers"
}

main() {
    phx_load_context
    local role version image port data hash state action
    role="$(phx_ctx portainer_role server)"
    [[ "$role" == server ]] || phx_die "this script runs the Portainer server; portainer_role is '$role'"
    version="$(phx_ctx portainer_version "$PORTAINER_DEFAULT_VERSION")"
    portainer_version_ok "$version" ||
        phx_die "Portainer $version cannot manage Docker 29 (API 1.44 required; portainer#12934): set app.portainer.version to $PORTAINER_MIN_VERSION or newer"
    image="$(portainer_image "$version")"
    port="$(phx_ctx portainer_port 9443)"
    data="$(phx_ctx portainer_data_dir /var/lib/portainer)"
    phx_ensure_dir "$data"
    portainer_check_data_dir "$data"
    write_password_file
    if ! docker info >/dev/null 2>&1; then
        phx_has_systemd && phx_die "the docker daemon is not running"
        phx_log "systemd is not running, so neither is Docker: Portainer not started"
        phx_finish
        return 0
    fi
    hash="$(portainer_spec_hash "$image" "$port" "$data" "$PORTAINER_PASSWORD_FILE")"
    state="$(phx_container_state "$PORTAINER_NAME")"
    action="$(phx_container_decide "$state" "$image" "$hash")"
    case "$action" in
        nothing) phx_log "container $PORTAINER_NAME runs $image on port $port" ;;
        start)
            docker start "$PORTAINER_NAME" >/dev/null
            phx_changed "started container $PORTAINER_NAME"
            ;;
        replace | create)
            if [[ "$action" == replace ]]; then
                docker rm -f "$PORTAINER_NAME" >/dev/null
                phx_changed "removed container $PORTAINER_NAME (its settings changed; data stays in $data)"
            fi
            if docker image inspect "$image" >/dev/null 2>&1; then
                phx_log "image $image is present: not pulled"
            else
                phx_docker_pull "$image"   # logged in for this pull only when docker_token is set
                phx_changed "pulled $image"
            fi
            local -a args
            mapfile -t args < <(portainer_run_args "$image" "$port" "$data" "$PORTAINER_PASSWORD_FILE")
            docker "${args[@]}" >/dev/null
            phx_changed "created container $PORTAINER_NAME ($image, https port $port)"
            ;;
    esac
    PHX_WAIT_TIMEOUT="${PHX_PORTAINER_WAIT_S:-120}" phx_wait_for curl -kfsS "https://127.0.0.1:$port/api/system/status" ||
        phx_die "Portainer does not answer on https://127.0.0.1:$port"
    phx_log "Portainer answers on https://127.0.0.1:$port"
    portainer_check_local "$port"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
