#!/usr/bin/env bash
# @phoenix summary: Docker Engine, and the NVIDIA Container Toolkit with GPUs; ends by starting a container
# @phoenix requires: nesting
# @phoenix requires: keyctl
# @phoenix secret: docker_token optional
#
# Context: PHX_GPUS (toolkit only when non-empty), PHX_DOCKER_USER (added to the docker group),
#          PHX_DOCKER_SOURCE (distro | docker; default distro: Debian/Ubuntu docker.io; anything else is an error).
# With docker_source=docker, Docker's own install instructions: the conflicting distro packages removed, the key in
# /etc/apt/keyrings/docker.asc, the repository as a deb822 /etc/apt/sources.list.d/docker.sources.
# Before the layer counts as baked (systemd running): the storage driver is not vfs, and a container really starts
# (`docker run --rm --network none` of a tiny image made here with `docker import`: no registry). That run is what
# fails in an unprivileged container when runc >= 1.3.3 meets a host lxc-pve older than 6.0.5-2.
# Secret:  docker_token ("USERNAME:TOKEN", or a bare token with PHX_DOCKER_LOGIN_USER): checked here by a login into a
#          temporary client config that is removed at once. No registry credentials are stored: an app that pulls
#          logs in per use (phx_docker_pull), a /root/.docker/config.json with saved logins is emptied of them, and
#          Phoenix removes /etc/phoenix/secrets/* before the snapshot, so a template never carries them.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

DOCKER_KEYRING=/etc/apt/keyrings/docker.asc
DOCKER_SOURCES=/etc/apt/sources.list.d/docker.sources
# where earlier Phoenix versions (and older Docker instructions) put them
DOCKER_LEGACY_FILES=(/etc/apt/sources.list.d/docker.list /usr/share/keyrings/docker.asc)
NVIDIA_KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.asc
NVIDIA_CTK_CONFIG=/etc/nvidia-container-runtime/config.toml
DOCKER_CLIENT_CONFIG="${DOCKER_CLIENT_CONFIG:-/root/.docker/config.json}"
SMOKE_IMAGE=phoenix/docker-smoke:1
SMOKE_WORD=phoenix-docker-smoke-ok

# docker_check_source SOURCE: distro or docker; anything else stops the script.
docker_check_source() {
    case "$1" in
        distro | docker) return 0 ;;
        *) phx_die "unknown docker_source '$1': use distro (the distribution's docker.io) or docker (Docker's repository)" ;;
    esac
}

# docker_packages distro|docker: the Engine packages for a source.
docker_packages() {
    case "$1" in
        distro) printf '%s\n' docker.io ;;
        docker) printf '%s\n' docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin ;;
        *) return 1 ;;
    esac
}

# docker_conflicting_packages OS_ID: what Docker's instructions remove before installing docker-ce.
docker_conflicting_packages() {
    printf '%s\n' docker.io docker-doc docker-compose podman-docker containerd runc
    [[ "$1" != ubuntu ]] || printf '%s\n' docker-compose-v2
}

# docker_suite OS_ID: the repository's suite (Ubuntu derivatives name their base release in UBUNTU_CODENAME).
docker_suite() {
    local key value ubuntu="" codename=""
    while IFS='=' read -r key value; do
        value="${value#\"}"
        value="${value%\"}"
        case "$key" in
            UBUNTU_CODENAME) ubuntu="$value" ;;
            VERSION_CODENAME) codename="$value" ;;
        esac
    done <"${OS_RELEASE:-/etc/os-release}"
    if [[ "$1" == ubuntu && -n "$ubuntu" ]]; then
        printf '%s\n' "$ubuntu"
    else
        printf '%s\n' "$codename"
    fi
}

# docker_sources_file OS_ID SUITE ARCH: Docker's repository as a deb822 source.
docker_sources_file() {
    printf 'Types: deb\nURIs: https://download.docker.com/linux/%s\nSuites: %s\nComponents: stable\nArchitectures: %s\nSigned-By: %s\n' \
        "$1" "$2" "$3" "$DOCKER_KEYRING"
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

add_docker_repository() {
    local os="$1" suite f
    suite="$(docker_suite "$os")"
    [[ -n "$suite" ]] || phx_die "no VERSION_CODENAME in /etc/os-release: cannot pick Docker's suite"
    for f in "${DOCKER_LEGACY_FILES[@]}"; do
        phx_remove_file "$f"
    done
    phx_ensure_dir /etc/apt/keyrings 0755
    if [[ ! -s "$DOCKER_KEYRING" ]]; then
        local tmp
        phx_tmpfile tmp
        curl -fsSL "https://download.docker.com/linux/$os/gpg" -o "$tmp" || phx_die "cannot download Docker's signing key"
        install -m 0644 "$tmp" "$DOCKER_KEYRING"
        phx_changed "added Docker's signing key ($DOCKER_KEYRING)"
    fi
    docker_sources_file "$os" "$suite" "$(phx_arch)" | phx_write_file "$DOCKER_SOURCES" 0644
    if phx_file_changed; then
        phx_apt_sources_changed
    fi
}

remove_conflicting_packages() {
    local -a conflicting
    mapfile -t conflicting < <(docker_conflicting_packages "$1")
    local -a installed=()
    local pkg
    for pkg in "${conflicting[@]}"; do
        phx_pkg_installed "$pkg" && installed+=("$pkg")
    done
    ((${#installed[@]})) || return 0
    phx_log "removing packages that conflict with Docker's: ${installed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 remove -y -qq "${installed[@]}" >/dev/null
    phx_changed "removed ${installed[*]}"
}

install_engine() {
    local source
    source="$(phx_ctx docker_source distro)"
    docker_check_source "$source"
    local -a pkgs
    mapfile -t pkgs < <(docker_packages "$source")
    if [[ "$source" == docker ]]; then
        local os
        os="$(phx_os_id)"
        if [[ -n "$(phx_apt_missing "${pkgs[@]}")" ]]; then
            remove_conflicting_packages "$os"
        fi
        add_docker_repository "$os"
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

# forget_registry_logins: a saved login in the Docker client config would be inherited by every clone of the template.
forget_registry_logins() {
    [[ -f "$DOCKER_CLIENT_CONFIG" ]] || return 0
    if jq -e '(.auths // {}) != {} or has("credsStore") or has("credHelpers")' "$DOCKER_CLIENT_CONFIG" >/dev/null 2>&1; then
        jq 'del(.auths, .credsStore, .credHelpers)' "$DOCKER_CLIENT_CONFIG" | phx_write_file "$DOCKER_CLIENT_CONFIG" 0600
        phx_changed "removed saved registry logins from $DOCKER_CLIENT_CONFIG (log in per use)"
    fi
}

# docker_smoke_rootfs DIR: a minimal root file system in DIR: /bin/echo and the libraries it loads.
docker_smoke_rootfs() {
    local dir="$1" echo_bin lib
    echo_bin="$(readlink -f /bin/echo)"
    mkdir -p "$dir/bin"
    cp -L "$echo_bin" "$dir/bin/echo"
    while IFS= read -r lib; do
        [[ -n "$lib" ]] || continue
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done < <(ldd "$echo_bin" | sed -nE 's#^[^/]*(/[^ ]+) \(0x[0-9a-f]+\)$#\1#p')
}

# docker_smoke_test: the daemon answers, its storage driver is not vfs, and a container really starts.
docker_smoke_test() {
    local driver out dir
    driver="$(docker info --format '{{.Driver}}' 2>&1)" || { printf '%s\n' "$driver" >&2; phx_die "the docker daemon does not answer"; }
    if [[ "$driver" == vfs ]]; then
        phx_die "Docker uses the vfs storage driver (a full copy of every layer: slow and disk-hungry): give the container a root file system overlay2 works on (ext4/xfs volume, or ZFS 2.2+)"
    fi
    if ! docker image inspect "$SMOKE_IMAGE" >/dev/null 2>&1; then
        phx_tmpdir dir
        docker_smoke_rootfs "$dir"
        tar -C "$dir" -c . | docker import - "$SMOKE_IMAGE" >/dev/null
    fi
    if ! out="$(docker run --rm --network none "$SMOKE_IMAGE" /bin/echo "$SMOKE_WORD" 2>&1)" || [[ "$out" != "$SMOKE_WORD" ]]; then
        printf '%s\n' "$out" >&2
        docker image rm "$SMOKE_IMAGE" >/dev/null 2>&1 || true
        phx_die "docker cannot start a container. In an unprivileged Proxmox container, runc 1.3.3 and newer need lxc-pve 6.0.5-2 or newer on the host (runc#4968), and the container needs features nesting=1,keyctl=1"
    fi
    docker image rm "$SMOKE_IMAGE" >/dev/null
    phx_log "smoke test: a container started and ran (storage driver $driver)"
}

check_daemon() {
    if ! phx_has_systemd; then
        phx_log "systemd is not running: the daemon and its smoke test run when the container boots"
        return 0
    fi
    PHX_WAIT_TIMEOUT="${PHX_DOCKER_WAIT_S:-60}" PHX_WAIT_INTERVAL=1 phx_wait_for docker info ||
        phx_die "docker.service does not answer (systemctl status docker; journalctl -u docker)"
    docker_smoke_test
    check_registry_login
}

# check_registry_login: the docker_token logs in (into a temporary config, removed at exit): a wrong token fails
# this layer, not the first pull of an app months later.
check_registry_login() {
    local cfg
    phx_has_secret docker_token || return 0
    phx_tmpdir cfg
    phx_docker_login "$cfg"
    DOCKER_CONFIG="$cfg" docker logout >/dev/null 2>&1 || true
    phx_log "docker_token logs in to Docker Hub (not saved)"
}

main() {
    phx_load_context
    install_engine
    install_nvidia_toolkit
    add_docker_user
    forget_registry_logins
    check_daemon
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
