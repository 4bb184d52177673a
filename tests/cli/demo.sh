#!/usr/bin/env bash
# The README's main command must keep working: run the demo script against
# the binary under test (ctest sets SEALPOST). The demo asserts each step
# (PASSED reports, the policy refusal, the tampered copy) and exits non-zero
# on any failure.
set -euo pipefail
exec bash "$SEALPOST_SOURCE_DIR/scripts/demo.sh"
