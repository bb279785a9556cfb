"""The ``svf`` program: a warm server (svf/warm.py) runs the command when one is reachable, else this process."""
import os
import sys


def main() -> int:
    from .warm import ENV_CHILD, ENV_SOCKET

    if os.environ.get(ENV_SOCKET) and not os.environ.get(ENV_CHILD):
        from .warm import run_remote  # skips a new interpreter's torch start-up

        code = run_remote(os.environ[ENV_SOCKET], sys.argv[1:])
        if code is not None:
            return code
    from .cli import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
