"""Asks the notebook user for their name through the pipe (run from notebooks/pipes.ipynb with !python3)."""

from tsnb_pipe import InputNotAvailable, Pipe

with Pipe() as pipe:
    try:
        name = pipe.input("Your name? ")
        secret = pipe.getpass("A secret (hidden, only its length is shown): ")
        print("Hello, %s! Your secret has %d characters." % (name, len(secret)))
    except InputNotAvailable as err:
        # nbconvert and nbclient take no input: the answer is an error at once, not a hang.
        print("Nobody can answer here (%s), so no greeting." % err)
