#!/usr/bin/env bash
# Runs every test of cvops: the README's test command, and what CI runs.
#
# It first holds the code to its style: `cargo fmt --check`, and clippy with every warning an
# error (the lints are the workspace's `[workspace.lints]`). Plain `cargo test` is hermetic: the
# AWS adapters' tests skip themselves, saying so. This script also checks the SAM template with cfn-lint and checkov (installed from PyPI into .venv-iac at the
# pinned versions below), installs moto (an AWS-compatible server, from PyPI) at its pinned
# version if it is missing or another version, starts moto's server on a free loopback port, runs
# the whole workspace with CVOPS_TEST_AWS_ENDPOINT pointing at it, and stops the server on the
# way out, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
# Exact versions from PyPI: the template is checked by the same rules and the AWS tests run
# against the same server until someone moves a pin (and fixes what the new version finds).
cfn_lint_version=1.58.0
checkov_version=3.3.30
moto_version=5.2.1
# The COCO reference: a test loads cvops' COCO export with it and counts the boxes.
pycocotools_version=2.0.11

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The installed version of a distribution, or nothing.
installed() { "$1" -c "import importlib.metadata as m; print(m.version('$2'))" 2>/dev/null || true; }

# The template's linters live in a virtual environment of their own: checkov pins versions of
# boto3 and friends that moto's would otherwise fight over.
iac=${CVOPS_IAC_VENV:-.venv-iac}
if [ ! -x "$iac/bin/cfn-lint" ] || [ ! -x "$iac/bin/checkov" ] ||
    [ "$(installed "$iac/bin/python" cfn-lint)" != "$cfn_lint_version" ] ||
    [ "$(installed "$iac/bin/python" checkov)" != "$checkov_version" ]; then
    echo "== installing cfn-lint $cfn_lint_version and checkov $checkov_version from PyPI into $iac"
    "$python" -m venv "$iac"
    "$iac/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$cfn_lint_version" "checkov==$checkov_version"
fi
echo "== cfn-lint infra/template.yaml"
"$iac/bin/cfn-lint" infra/template.yaml
echo "== checkov -f infra/template.yaml (every skip is justified inline in the template)"
"$iac/bin/checkov" -f infra/template.yaml --quiet --compact --skip-download

if ! command -v moto_server >/dev/null 2>&1 || ! "$python" -c "import moto.server, flask" >/dev/null 2>&1 ||
    [ "$(installed "$python" moto)" != "$moto_version" ]; then
    echo "== installing moto[server] $moto_version from PyPI"
    "$python" -m pip install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi

if [ "$(installed "$python" pycocotools)" != "$pycocotools_version" ]; then
    echo "== installing pycocotools $pycocotools_version from PyPI"
    "$python" -m pip install --quiet --disable-pip-version-check "pycocotools==$pycocotools_version"
fi
export CVOPS_TEST_PYCOCOTOOLS="$python"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
echo "== starting moto_server on 127.0.0.1:$port (log: $log)"
# moto's own server, but answering one request at a time (see scripts/moto-server.py for why).
"$python" scripts/moto-server.py 127.0.0.1 "$port" >"$log" 2>&1 &
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
