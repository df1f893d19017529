#!/usr/bin/env bash
# @phoenix summary: Docker Engine, and the NVIDIA Container Toolkit with GPUs
# @phoenix requires: nesting
# @phoenix requires: keyctl
# @phoenix secret: docker_token optional
#
# Context: PHX_GPUS (toolkit only when non-empty), PHX_DOCKER_USER (added to the docker group),
#          PHX_DOCKER_SOURCE (distro | docker; default distro: Debian/Ubuntu docker.io).
# Secret:  docker_token, "USERNAME:TOKEN" (or a bare token with PHX_DOCKER_LOGIN_USER), used for
#          `docker login --password-stdin`: the token is piped, never put on a command line.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

DOCKER_KEYRING=/usr/share/keyrings/docker.asc
NVIDIA_KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.asc
NVIDIA_CTK_CONFIG=/etc/nvidia-container-runtime/config.toml

# docker_packages distro|docker: the Engine packages for a source.
docker_packages() {
    case "$1" in
        distro) printf '%s\n' docker.io ;;
        docker) printf '%s\n' docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin ;;
        *) phx_die "unknown docker source '$1' (distro or docker)" ;;
    esac
}

# docker_repo_line OS_ID CODENAME ARCH: the apt source of Docker's own repository.
docker_repo_line() {
    printf 'deb [arch=%s signed-by=%s] https://download.docker.com/linux/%s %s stable\n' \
        "$3" "$DOCKER_KEYRING" "$1" "$2"
}

# docker_want_nvidia_toolkit GPUS: true when the guest has GPUs ("0,1"); "" means none.
docker_want_nvidia_toolkit() {
    local gpus="${1//[[:space:],]/}"
    [[ -n "$gpus" ]]
}

# docker_nvidia_repo_line: the apt source of the NVIDIA Container Toolkit (apt expands $(ARCH)).
docker_nvidia_repo_line() {
    # shellcheck disable=SC2016  # $(ARCH) is apt's variable, written literally
    printf 'deb [signed-by=%s] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n' "$NVIDIA_KEYRING"
}

# docker_nvidia_no_cgroups CONFIG_TEXT: the toolkit config with no-cgroups = true. In an LXC
# container the cgroup device rules belong to the host (lxc.cgroup2.devices.allow), and
# nvidia-container-cli cannot set them from inside an unprivileged container.
docker_nvidia_no_cgroups() {
    awk '
        /^[#[:space:]]*no-cgroups[[:space:]]*=/ { if (!done) print "no-cgroups = true"; done = 1; next }
        { print }
        /^\[nvidia-container-cli\][[:space:]]*$/ && !done { print "no-cgroups = true"; done = 1 }
        END { if (!done) { print "[nvidia-container-cli]"; print "no-cgroups = true" } }
    ' <<<"$1"
}

# docker_login_parts SECRET [USER]: print "user" then "token" on two lines (for `read`), from
# "user:token" or a bare token plus a user. Used only on stdin/variables, never as arguments.
docker_login_user() {
    local secret="$1" user="${2:-}"
    if [[ "$secret" == *:* ]]; then
        printf '%s\n' "${secret%%:*}"
    else
        printf '%s\n' "$user"
    fi
}

docker_login_token() {
    local secret="$1"
    printf '%s' "${secret#*:}"
}

add_apt_source() {   # add_apt_source NAME KEY_URL KEYRING LINE
    local name="$1" key_url="$2" keyring="$3" line="$4"
    if [[ ! -s "$keyring" ]]; then
        curl -fsSL "$key_url" -o "$keyring.tmp"
        mv "$keyring.tmp" "$keyring"
        chmod 0644 "$keyring"
        phx_changed "added the $name signing key"
    fi
    printf '%s\n' "$line" | phx_write_file "/etc/apt/sources.list.d/$name.list" 0644
    if phx_file_changed; then
        phx_apt_sources_changed
    fi
}

install_engine() {
    local source
    source="$(phx_ctx docker_source distro)"
    local -a pkgs
    mapfile -t pkgs < <(docker_packages "$source")
    if [[ "$source" == docker ]] && (($(phx_apt_missing "${pkgs[@]}" | wc -l))); then
        local os
        os="$(phx_os_id)"
        add_apt_source docker "https://download.docker.com/linux/$os/gpg" "$DOCKER_KEYRING" \
            "$(docker_repo_line "$os" "$(phx_os_codename)" "$(phx_arch)")"
    fi
    phx_apt_install "${pkgs[@]}"
    phx_service_enable docker.service
    phx_service_start docker.service
}

install_nvidia_toolkit() {
    if ! docker_want_nvidia_toolkit "$(phx_ctx gpus)"; then
        phx_log "no GPUs assigned: NVIDIA Container Toolkit not needed"
        return 0
    fi
    if ! phx_pkg_installed nvidia-container-toolkit; then
        add_apt_source nvidia-container-toolkit \
            https://nvidia.github.io/libnvidia-container/gpgkey "$NVIDIA_KEYRING" "$(docker_nvidia_repo_line)"
        phx_apt_install nvidia-container-toolkit
    fi
    local current=""
    [[ -f "$NVIDIA_CTK_CONFIG" ]] && current="$(cat "$NVIDIA_CTK_CONFIG")"
    docker_nvidia_no_cgroups "$current" | phx_write_file "$NVIDIA_CTK_CONFIG" 0644
    if ! { [[ -f /etc/docker/daemon.json ]] && jq -e '.runtimes.nvidia' /etc/docker/daemon.json >/dev/null 2>&1; }; then
        nvidia-ctk runtime configure --runtime=docker >/dev/null
        phx_changed "registered the nvidia runtime with Docker"
        if phx_has_systemd; then
            systemctl restart docker.service
            phx_changed "restarted docker.service"
        fi
    fi
}

add_docker_user() {
    local user
    user="$(phx_ctx docker_user)"
    [[ -n "$user" ]] || return 0
    id -u "$user" >/dev/null 2>&1 || phx_die "docker user $user does not exist (base_setup creates user_config.username)"
    if [[ " $(id -nG "$user") " != *" docker "* ]]; then
        usermod -aG docker "$user"
        phx_changed "added $user to the docker group"
    fi
}

docker_login() {
    phx_has_secret docker_token || return 0
    if ! phx_has_systemd || ! docker info >/dev/null 2>&1; then
        phx_log "docker daemon not running: docker login skipped"
        return 0
    fi
    local secret user token
    secret="$(phx_secret docker_token)"
    user="$(docker_login_user "$secret" "$(phx_ctx docker_login_user)")"
    [[ -n "$user" ]] || phx_die "docker_token has no user: write USERNAME:TOKEN or set docker_login_user"
    if [[ -f /root/.docker/config.json ]] &&
        jq -e '.auths["https://index.docker.io/v1/"]' /root/.docker/config.json >/dev/null 2>&1; then
        return 0
    fi
    token="$(docker_login_token "$secret")"
    # printf is a shell builtin: the token goes through a pipe, not an argument of a process.
    printf '%s' "$token" | docker login --username "$user" --password-stdin >/dev/null
    phx_changed "logged in to Docker Hub as $user"
}

main() {
    phx_load_context
    install_engine
    install_nvidia_toolkit
    add_docker_user
    docker_login
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
