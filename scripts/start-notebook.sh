#!/usr/bin/env bash
# `npm start`: build tsnb, install its kernelspec into a private Jupyter dir inside the repository
# (.tsnb/jupyter, gitignored, so nothing outside the checkout changes), and start the classic Jupyter
# Notebook on 127.0.0.1 with notebooks/ open.
#
# Environment: PORT (default 8888; the next free port is used if taken), TSNB_JUPYTER_ARGS (extra
# arguments for `jupyter notebook`, e.g. "--NotebookApp.token=''").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ ! -x /usr/bin/jupyter ]; then
  echo "error: /usr/bin/jupyter not found. On Debian install it with:" >&2
  echo "  apt-get install --no-install-recommends jupyter-notebook python3-ipykernel" >&2
  exit 1
fi

echo "== building tsnb"
node scripts/build.mjs

prefix="$root/.tsnb/jupyter"
echo "== installing the tsnb kernelspec into $prefix/share/jupyter/kernels/tsnb"
node bin/tsnb.mjs install --prefix "$prefix" --name tsnb

# Jupyter finds kernelspecs in JUPYTER_PATH/kernels; the system ones (python3) stay visible.
export JUPYTER_PATH="$prefix/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
# Python 3.11's debugger warns about frozen modules on every ipykernel start; it is noise for users.
export PYDEVD_DISABLE_FILE_VALIDATION=1

args=(
  notebook
  --no-browser
  --ip=127.0.0.1
  "--port=${PORT:-8888}"
  "--notebook-dir=$root/notebooks"
)
[ "$(id -u)" -eq 0 ] && args+=(--allow-root)
# shellcheck disable=SC2206 # intentional word splitting of user-supplied extra arguments
[ -n "${TSNB_JUPYTER_ARGS:-}" ] && args+=(${TSNB_JUPYTER_ARGS})

echo "== starting Jupyter Notebook (Ctrl-C to stop); open the URL with the token printed below"
echo "   e.g. http://127.0.0.1:${PORT:-8888}/tree?token=... then notebooks -> basics.ipynb"
exec /usr/bin/jupyter "${args[@]}"
