#!/usr/bin/env bash
# Creates .venv/ and installs infra/requirements.txt into it (moto, cfn-lint,
# aws-sam-cli, cargo-lambda). Re-installs only when requirements.txt is newer
# than .venv/.installed, so a second run takes well under a second.
set -euo pipefail

cd "$(dirname "$0")/.."
venv=.venv
requirements=infra/requirements.txt
stamp=$venv/.installed

if [[ ! -x $venv/bin/python ]]; then
    echo "tools: creating $venv"
    python3 -m venv "$venv"
fi

if [[ ! -f $stamp || $requirements -nt $stamp ]]; then
    echo "tools: installing $requirements"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$venv/bin/python" -m pip install --quiet -r "$requirements"
    touch "$stamp"
fi

echo "tools: moto_server  $venv/bin/moto_server"
echo "tools: cfn-lint     $venv/bin/cfn-lint ($("$venv/bin/cfn-lint" --version 2>&1))"
echo "tools: sam          $venv/bin/sam"
echo "tools: cargo-lambda $venv/bin/cargo-lambda ($("$venv/bin/cargo-lambda" lambda --version 2>&1))"
