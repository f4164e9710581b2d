#!/usr/bin/env bash
# Runs every test of cvops: the README's test command, and what CI runs.
#
# Plain `cargo test` is hermetic: the AWS adapters' tests skip themselves, saying so. This script
# also checks the SAM template with cfn-lint and checkov (installed from PyPI into .venv-iac the
# first time), installs moto (an AWS-compatible server, from PyPI) if it is missing, starts
# moto_server on a free loopback port, runs the whole workspace with CVOPS_TEST_AWS_ENDPOINT
# pointing at it, and stops the server on the way out, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
# The template's linters live in a virtual environment of their own: checkov pins versions of
# boto3 and friends that moto's would otherwise fight over.
iac=${CVOPS_IAC_VENV:-.venv-iac}
if [ ! -x "$iac/bin/cfn-lint" ] || [ ! -x "$iac/bin/checkov" ]; then
    echo "== installing cfn-lint and checkov from PyPI into $iac"
    "$python" -m venv "$iac"
    "$iac/bin/pip" install --quiet --disable-pip-version-check 'cfn-lint>=1,<2' 'checkov>=3,<4'
fi
echo "== cfn-lint infra/template.yaml"
"$iac/bin/cfn-lint" infra/template.yaml
echo "== checkov -f infra/template.yaml (every skip is justified inline in the template)"
"$iac/bin/checkov" -f infra/template.yaml --quiet --compact --skip-download

if ! command -v moto_server >/dev/null 2>&1 || ! "$python" -c "import moto.server, flask" >/dev/null 2>&1; then
    echo "== installing moto[server] from PyPI"
    "$python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
echo "== starting moto_server on 127.0.0.1:$port (log: $log)"
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
    if "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then
        echo "moto_server exited; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.2
done

export CVOPS_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
echo "== cargo test --workspace (AWS tests against $CVOPS_TEST_AWS_ENDPOINT)"
cargo test --workspace --locked "$@"
