#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages (espeak-ng and the audio encoders for
# speech, protobuf-compiler for `make proto`, chromium for the console's browser test) and the Go modules. Reuses whatever is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v lame      >/dev/null || need+=(lame)
command -v opusenc   >/dev/null || need+=(opus-tools)
command -v protoc    >/dev/null || need+=(protobuf-compiler)
command -v chromium  >/dev/null || need+=(chromium)

if ((${#need[@]})); then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
		echo "provision: installing ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	else
		echo "provision: missing ${need[*]} (not root or no apt-get); tests that need them will skip, or fail with CI=true" >&2
	fi
fi

go mod download
