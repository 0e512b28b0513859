"""A `dask worker` that cannot read the client's folders (those in HEATKIT_HIDDEN, separated by
os.pathsep): every open or listing of a path in them fails, and its working folder is /. The tests
start it in a mount namespace of its own as well, where they can (as root), with a tmpfs over
those folders: the worker's view then differs from the client's as on a real cluster.

    python tests/hidden_worker.py tcp://127.0.0.1:8786 --nthreads 1 --no-nanny
"""
import os
import sys

HIDDEN = [folder for folder in os.environ["HEATKIT_HIDDEN"].split(os.pathsep) if folder]
READS = ("open", "os.listdir", "os.scandir")  # the audit events of reading a file or a folder


def refuse_hidden(event: str, args: tuple) -> None:
    if event in READS and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if any(path == folder or path.startswith(folder + os.sep) for folder in HIDDEN):
            raise PermissionError(f"{path} is on the client's disk, which this worker does not see")


if __name__ == "__main__":
    sys.addaudithook(refuse_hidden)
    os.chdir("/")
    from distributed.cli.dask_worker import main

    sys.argv[0] = "dask worker"
    sys.exit(main())
