#!/usr/bin/env bash
# Shared library sourced by every Phoenix feature and app script.
set -euo pipefail
phx_log() { printf '%s\n' "$*"; }
