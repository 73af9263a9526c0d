"""Execute one notebook headlessly with nbclient and write the executed copy as JSON.

Usage: /usr/bin/python3 run_notebook.py IN.ipynb OUT.ipynb KERNEL_NAME TIMEOUT_SECONDS

Cells tagged `raises-exception` may fail (nbclient honours the tag); any other failing cell stops the run.
The executed notebook is written even when execution stops early, so the caller can show what ran. The
exit code is 0 when every cell ran, 1 when a cell failed, 2 on bad usage. The kernel runs with the
notebook's directory as its working directory, as it does in Jupyter.
"""

import os
import sys
import traceback

import nbformat
from nbclient import NotebookClient


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst, kernel_name, timeout = argv[1], argv[2], argv[3], int(argv[4])
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=timeout,
        startup_timeout=60,
        allow_errors=False,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(src))}},
    )
    status = 0
    try:
        client.execute()
    except Exception:  # report any execution failure, but still write what ran
        traceback.print_exc()
        status = 1
    nbformat.write(nb, dst)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
