#!/usr/bin/env bash
# Installs what MMSharp needs on a Debian machine (run as root). Safe to run again.
set -euo pipefail
need=()
# ffmpeg: video frames; openmpi: distributed training (later issues); nothing optional here is skipped silently.
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET 10 SDK (dotnet) is not on PATH; install it from Microsoft's Debian packages first" >&2
  exit 1
fi
