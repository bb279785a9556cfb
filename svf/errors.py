"""What a user meets when something is wrong: one short paragraph (what is wrong, which file or key, what to do) and
an exit code per kind of mistake; the traceback only with ``svf --debug`` or in the job's log (``svf --log``).

Code raises a subclass of :class:`SvfError` where it knows the kind; :func:`describe` turns any exception into the
paragraph and the exit code (exceptions of other libraries are "unexpected": exit 1, with a hint to rerun with
``--debug``). This module is light (the Snakefile imports it while it builds the DAG).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass


class SvfError(Exception):
    """An error whose message the user can act on. ``kind`` names it in the paragraph, ``exit_code`` is the
    command's status and ``advice`` says what to do when the message itself does not (an instance may override
    it: ``SvfError(message, advice="...")``)."""

    kind = "error"
    exit_code = 1
    advice = ""

    def __init__(self, message: str = "", advice: str | None = None):
        super().__init__(message)
        if advice is not None:
            self.advice = advice


class UsageError(SvfError):
    """A command-line mistake argparse cannot catch: options that clash or need a partner, an unknown download
    item, a Snakemake target the workflow does not make."""

    kind, exit_code = "usage", 2
    advice = "See `svf <command> --help` for the arguments."


class ConfigError(SvfError, ValueError):
    """A mistake in the config, tables.yaml or a --spec: an unknown key, policy, recipe or table, a value of the
    wrong type."""

    kind, exit_code = "configuration", 5
    advice = "Fix the named key in the named file (config/config.yaml documents every key)."


class UnknownNameError(ConfigError, KeyError):
    """A table, row or recipe name that the config or tables file does not define (a KeyError for callers that
    look names up, shown without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataError(SvfError, ValueError):
    """An input the data code cannot use: a corrupt image, a mask of the wrong size or with a bad class id, a
    dataset.json without its keys, an empty list or support pool."""

    kind, exit_code = "input data", 6
    advice = ("Replace or re-create the named file: a prepared dataset is re-made by deleting its directory under "
              "resources/ and running `snakemake` again (rules prepare, splits).")


class ModelFileError(SvfError, RuntimeError):
    """A model, checkpoint or weights file that is truncated, unsafe to load or not in place."""

    kind, exit_code = "model file", 7
    advice = "Delete the named file; `snakemake` re-makes it."


class DeviceError(SvfError, RuntimeError):
    """The device asked for cannot run the command: not a device, CUDA absent, no free GPU, out of GPU memory."""

    kind, exit_code = "device", 8
    advice = "Choose another device with --device (auto, cpu, cuda, cuda:N)."


class TrainingError(SvfError, RuntimeError):
    """Training cannot go on: the loss became NaN or infinite."""

    kind, exit_code = "training", 9
    advice = "Lower the recipe's base_lr or check the data of the named cell."


class DownloadFailure(SvfError, RuntimeError):
    """A download or its check failed: a checksum mismatch, a server error, no source, an archive that does not
    extract."""

    kind, exit_code = "download", 10
    advice = ("Run the command again (downloads resume), or put the file in a directory and pass --mirror DIR "
              "(config: data.mirror).")


class ResultsError(SvfError, ValueError):
    """A results file the report layer cannot use: missing metrics, cells of mixed configs, a malformed
    table, figure or study input."""

    kind, exit_code = "results", 11
    advice = "Run the rules that make the named file first (`snakemake <target>`), or fix the named file."


@dataclass(frozen=True)
class ExitCode:
    code: int
    kind: str
    examples: str


#: Every exit status of ``svf`` (also in ``svf --help`` and docs/errors.md).
EXIT_CODES = (
    ExitCode(0, "success", ""),
    ExitCode(1, "unexpected error", "an exception the code did not foresee (probably a bug: rerun with --debug)"),
    ExitCode(2, "usage", "a bad command-line argument, e.g. --device gpu"),
    ExitCode(3, "reference lists differ", "svf prepare/splits --strict-reference on real data"),
    ExitCode(4, "support pool too small", "svf splits --min-pool-size"),
    ExitCode(ConfigError.exit_code, ConfigError.kind, "config or tables.yaml: unknown key, bad policy, unknown "
                                                      "recipe or table; a bad --spec"),
    ExitCode(DataError.exit_code, DataError.kind, "corrupt image, mask of the wrong size or with a bad class id, "
                                                  "missing file, empty list or pool"),
    ExitCode(ModelFileError.exit_code, ModelFileError.kind, "truncated or unsafe model.pt, checkpoint or weights"),
    ExitCode(DeviceError.exit_code, DeviceError.kind, "CUDA requested but absent, out of GPU memory, no free GPU"),
    ExitCode(TrainingError.exit_code, TrainingError.kind, "the loss became NaN or infinite"),
    ExitCode(DownloadFailure.exit_code, DownloadFailure.kind, "checksum mismatch, server error, no connection"),
    ExitCode(ResultsError.exit_code, ResultsError.kind, "collect/tables/figures: missing metrics, mixed configs"),
    ExitCode(12, "missing package", "a pipeline command run where only the library is installed (pip install svf, "
                                    "without the pipeline extra)"),
    ExitCode(130, "interrupted", "Ctrl-C"),
)


def exit_code_table() -> str:
    return "\n".join(f"  {e.code:>3}  {e.kind}" + (f": {e.examples}" if e.examples else "") for e in EXIT_CODES)


@dataclass(frozen=True)
class Described:
    """An exception as the user sees it."""

    kind: str
    exit_code: int
    message: str
    advice: str

    def paragraph(self, command: str, debug_hint: str = "") -> str:
        head = f"svf {command}: " if command else "svf: "
        text = f"{head}{self.kind} error: {self.message}"
        advice = self.advice.replace("<command>", command) if command else self.advice
        hint = "" if self.exit_code == UsageError.exit_code else debug_hint  # a usage error has nothing to trace
        tail = " ".join(t for t in (advice, hint, f"(exit code {self.exit_code})") if t)
        return f"{text}\n{tail}"


def clean_message(exc: BaseException) -> str:
    """The exception's own message: without the worker traceback that torch's DataLoader puts in front of an
    exception re-raised from a worker process ("Caught DataError in DataLoader worker process 0. Original
    Traceback ..."), and without KeyError's quotes."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    if "Original Traceback (most recent call last):" in text:
        name = type(exc).__name__
        found = list(re.finditer(rf"^(?:[\w.]+\.)?{re.escape(name)}: ", text, re.M))
        if found:
            text = text[found[-1].end():]
    return text.strip() or type(exc).__name__


def _other_kinds(exc: BaseException) -> tuple[str, int, str] | None:
    """Errors of the project's modules or the standard library that are not SvfErrors."""
    study = sys.modules.get("svf.report.study")  # its StudyError: results of the study's inputs
    if study is not None and isinstance(exc, getattr(study, "StudyError", ())):
        return ResultsError.kind, ResultsError.exit_code, ResultsError.advice
    if isinstance(exc, ModuleNotFoundError):
        return ("missing package", 12, "Install the pipeline's dependencies: `pip install 'svf[pipeline]'`, or "
                                       "`make install` for the exact versions of requirements.lock.")
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return "missing file", DataError.exit_code, "Check the path; `snakemake` makes the pipeline's files in order."
    if isinstance(exc, PermissionError):
        return "permission", DataError.exit_code, "Check the file's permissions."
    return None


def describe(exc: BaseException) -> Described:
    """The kind, exit code, message and advice of any exception."""
    message = clean_message(exc)
    if isinstance(exc, SvfError):
        return Described(exc.kind, exc.exit_code, message, exc.advice)
    other = _other_kinds(exc)
    if other is not None:
        return Described(other[0], other[1], message, other[2])
    return Described("unexpected", 1, f"{type(exc).__name__}: {message}",
                     "If the message does not point at a mistake in the input, this is a bug: please report it "
                     "with the traceback.")


__all__ = ["ConfigError", "DataError", "Described", "DeviceError", "DownloadFailure", "EXIT_CODES", "ModelFileError",
           "ResultsError", "UnknownNameError", "SvfError", "TrainingError", "UsageError", "clean_message", "describe",
           "exit_code_table"]
