#!/bin/sh
# One step of data/build-pipeline, run as a Batch job: reads the job's input with
# `workflow-manager job-input` (the workflow input for checkout, the output of the job before it,
# or an array of the builds' outputs for package), computes the step's artifact metadata with
# pipeline_step.py and passes it on with `workflow-manager publish-output`.
# Usage: step.sh <step> [<component>]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
input=$(workflow-manager job-input)
echo "${WORKFLOW_STATE:-?}: input $input" >&2
output=$(printf '%s' "$input" | python3 "$here/pipeline_step.py" "$@")
echo "${WORKFLOW_STATE:-?}: output $output" >&2
workflow-manager publish-output "$output"
