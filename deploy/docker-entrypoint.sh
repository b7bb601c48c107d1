#!/bin/sh
# The image's entry point. ECS passes a Secrets Manager secret as an environment variable, but the
# service reads its tokens from a file (WFM_AUTH_TOKENS_FILE): when WFM_AUTH_TOKENS holds the tokens
# file's YAML, it is written to that file (default /var/lib/workflow-manager/tokens.yml) and removed
# from the environment before the service starts. Then the command runs (`workflow-manager serve`).
set -eu
if [ -n "${WFM_AUTH_TOKENS:-}" ]; then
    WFM_AUTH_TOKENS_FILE="${WFM_AUTH_TOKENS_FILE:-/var/lib/workflow-manager/tokens.yml}"
    umask 077
    printf '%s\n' "$WFM_AUTH_TOKENS" > "$WFM_AUTH_TOKENS_FILE"
    export WFM_AUTH_TOKENS_FILE
    unset WFM_AUTH_TOKENS
fi
exec "$@"
