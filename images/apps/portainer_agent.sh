#!/usr/bin/env bash
# @phoenix summary: Portainer Agent (port 9001), so the Portainer server manages this guest's Docker
# @phoenix requires-feature: docker
#
# Context: PHX_PORTAINER_AGENT_VERSION, PHX_PORTAINER_AGENT_PORT.
# Run by the environment task portainer:env@ID on every Docker guest that has stacks and is not the server.
# Idempotent: a container with the same image and port (the phoenix.spec label) is kept; an image that is
# present is not pulled again.
# shellcheck source=images/lib/phoenix-common.sh
source "${PHOENIX_LIB:-/opt/phoenix/lib/phoenix-common.sh}"

AGENT_NAME=portainer_agent

# agent_spec IMAGE PORT: the container's arguments without the label, one a line (what the label's hash covers).
agent_spec() {
    local image="$1" port="$2"
    printf '%s\n' \
        --name "${AGENT_NAME}" --restart=always \
        -p "${port}:9001" \
        -v /var/run/docker.sock:/var/run/docker.sock \
        -v /var/lib/docker/volumes:/var/lib/docker/volumes \
        -v /:/host \
        "${image}"
}

agent_spec_hash() { agent_spec "$@" | sha256sum | cut -c1-16; }

main() {
    phx_load_context
    local image port hash state action
    image="portainer/agent:$(phx_ctx portainer_agent_version 2.33.5)"
    port="$(phx_ctx portainer_agent_port 9001)"
    docker info >/dev/null 2>&1 || phx_die "the docker daemon is not running on this guest"
    hash="$(agent_spec_hash "${image}" "${port}")"
    state="$(phx_container_state "${AGENT_NAME}")"
    action="$(phx_container_decide "${state}" "${image}" "${hash}")"
    case "${action}" in
        nothing) phx_log "container ${AGENT_NAME} runs ${image} on port ${port}" ;;
        start)
            docker start "${AGENT_NAME}" >/dev/null
            phx_changed "started container ${AGENT_NAME}"
            ;;
        replace | create)
            if [[ "${action}" == replace ]]; then
                docker rm -f "${AGENT_NAME}" >/dev/null
                phx_changed "removed container ${AGENT_NAME} (its settings changed)"
            fi
            docker image inspect "${image}" >/dev/null 2>&1 || docker pull -q "${image}" >/dev/null
            local -a args
            mapfile -t args < <(agent_spec "${image}" "${port}")
            docker run -d --label "phoenix.spec=${hash}" "${args[@]}" >/dev/null
            phx_changed "created container ${AGENT_NAME} (${image}, port ${port})"
            ;;
    esac
    PHX_WAIT_TIMEOUT="${PHX_PORTAINER_WAIT_S:-60}" phx_wait_for curl -kfsS -o /dev/null "https://127.0.0.1:${port}/ping" ||
        phx_die "the Portainer agent does not answer on https://127.0.0.1:${port}/ping"
    phx_log "the Portainer agent answers on port ${port}"
    phx_finish
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
