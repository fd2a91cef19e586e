#!/usr/bin/env bash
# Both official OCI conformance suites (see conformance/run.sh).
exec "$(dirname "$0")/../../conformance/run.sh"
