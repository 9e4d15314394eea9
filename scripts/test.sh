#!/usr/bin/env bash
# The test command: installs prerequisites, builds in Release and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# ffmpeg: video frame tests
bash scripts/install-deps.sh ffmpeg
log=$(mktemp)
set +e
dotnet test MMSharp.slnx -c Release --nologo "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
count() { grep -oE "$1: +[0-9]+" "$log" | awk '{s += $2} END {print s + 0}'; }
passed=$(count Passed)
failed=$(count Failed)
rm -f "$log"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit $rc
