#!/usr/bin/env bash
# Set up a development checkout: .venv, dependencies, .env, ./data, database schema and
# built-in templates. Safe to run again; it only adds what is missing.
#   ./setup.sh               (PYTHON=/path/to/python3.12 ./setup.sh to pick the interpreter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEFAULT_SECRET_KEY="insecure-development-key-change-me-before-production"

python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if [[ ! -x .venv/bin/python ]]; then
    if ! python=$(find_python); then
        echo "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)." >&2
        exit 1
    fi
    echo "==> Creating .venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv .venv
elif ! python_ok .venv/bin/python; then
    echo ".venv uses $(.venv/bin/python --version 2>&1); 3.11+ is required. Remove .venv and re-run." >&2
    exit 1
fi

# The seed guide says `source venv/bin/activate`; keep that working.
if [[ ! -e venv && ! -L venv ]]; then
    ln -s .venv venv
fi

echo "==> Installing the project and its development tools"
PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install --quiet -e '.[dev]'

if [[ ! -f .env ]]; then
    echo "==> Writing .env from .env.example"
    cp .env.example .env
fi
# Replace the shipped SECRET_KEY with a random one (a fresh .env, or one copied by hand).
.venv/bin/python - "$DEFAULT_SECRET_KEY" <<'PY'
import pathlib
import secrets
import sys

default = sys.argv[1]
env = pathlib.Path(".env")
lines = env.read_text().splitlines(keepends=True)
changed = False
for index, line in enumerate(lines):
    if line.strip() == f"SECRET_KEY={default}":
        lines[index] = f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        changed = True
if changed:
    env.write_text("".join(lines))
    print("==> Generated a random SECRET_KEY in .env")
PY

mkdir -p data

echo "==> Migrating the database"
.venv/bin/marketmon migrate
echo "==> Loading built-in search templates"
.venv/bin/marketmon seed

cat <<'DONE'

Setup complete.
  make run        API on http://127.0.0.1:8000 (docs at /api/v1/docs)
  make test       run the test suite
  make help       every other command
Or activate the environment yourself: source .venv/bin/activate  (venv/ works too)
DONE
