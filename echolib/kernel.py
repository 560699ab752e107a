"""The Jupyter kernel the stage notebooks run in (`make setup` registers it as "echolib"): ipykernel, started
after `echolib.startup`'s deferred import is in place, so a notebook's first `import altair` does not compile a
grammar no schema uses. Everything else is ipykernel's own launcher."""

from .startup import defer_rfc3987_syntax

#: the kernel's name (`make setup` registers it; echolib.stage starts every stage notebook in it)
KERNEL = "echolib"

if __name__ == "__main__":
    defer_rfc3987_syntax()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
