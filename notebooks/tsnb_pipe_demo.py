"""Demo for notebooks/pipes.ipynb: a Python program that talks to the browser through tsnb's pipes.

It sends a sine wave (float32, as binary) and a greeting to the page, shows a line of Markdown in the
running cell, and, when a browser is connected, waits up to WAIT seconds (first argument, default 15)
for clicks from the page's button and answers each one.
"""

import math
import sys
from array import array

from tsnb_pipe import Pipe, PipeTimeout

wait = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0

with Pipe() as pipe:
    ys = array("f", (math.sin(i / 8) for i in range(200)))
    pipe.send("py/sine", {"title": "sine from Python", "y": ys})
    pipe.send("py/greeting", "hello from Python")
    pipe.display({"text/markdown": "Python sent **%d** float32 samples to `py/sine`." % len(ys),
                  "text/plain": "Python sent %d float32 samples to py/sine." % len(ys)})
    pipe.subscribe("py/clicks")
    pipe.sync()  # everything above reached the kernel
    if pipe.frontends == 0:
        print("no browser connected: the values wait in the kernel's last-value store for the page")
    else:
        print("waiting %g s for clicks on the page's button" % wait)
        try:
            while True:
                address, count = pipe.receive(timeout=wait)
                pipe.send("py/answer", "Python saw click #%s" % count)
                print("click", count)
        except PipeTimeout:
            print("done waiting")
