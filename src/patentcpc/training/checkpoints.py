"""The run folder of a transformer training run (it becomes the model folder): checkpoints with
their ``COMMITTED`` markers, ``--resume``, the JSON-lines metrics log, and the final atomic write.

Checkpoints live in ``<output>/checkpoints/checkpoint-<step>``; a checkpoint counts only once its
``COMMITTED`` marker is written (after everything else), so a run killed while saving resumes from
the previous one.

A run that replaces a model (``--overwrite``, or the library's ``train`` into a model folder
without ``resume``) is built in a staging folder beside it (:func:`staging_dir`): checkpoints, logs
and plots included, so that the old folder stays byte-identical (and usable) until the new model
replaces it in one rename; an error or Ctrl-C removes the staging folder (a ``kill -9`` leaves it,
hidden, beside the old model). A new run that stops before its first committed checkpoint leaves
nothing at the output (:func:`discard_run`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from patentcpc.errors import ConfigError
from patentcpc.io import atomic_write_text

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LOGS = "logs"
METRICS_LOG = "metrics.jsonl"
COMMITTED = "COMMITTED"
RUN_CONFIG = "run_config.json"


def callbacks(run_dir: Path) -> list:
    """The Hugging Face Trainer callbacks of a run: the metrics log and the checkpoint commit marker."""
    from transformers import TrainerCallback

    class JsonlLogger(TrainerCallback):
        """Every log record (training loss, evaluation metrics) as one JSON line."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            path = run_dir / LOGS / METRICS_LOG
            path.parent.mkdir(parents=True, exist_ok=True)
            rec = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, default=float) + "\n")

    class CommitCheckpoint(TrainerCallback):
        """Mark a checkpoint complete once the Trainer has written all of it."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    atomic_write_text(ckpt / COMMITTED, f"{state.global_step}\n")

    return [JsonlLogger(), CommitCheckpoint()]


def last_checkpoint(folder: Path) -> Path | None:
    """The committed checkpoint with the highest step in ``folder`` (None if there is none)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / COMMITTED).exists() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def prepare_run_dir(run_dir: Path, resume: bool, run_config: dict, main: bool) -> Path | None:
    """Clean or check ``run_dir`` (checkpoints + logs); returns the checkpoint to resume from."""
    ckpt_dir = run_dir / CHECKPOINTS
    if not resume:
        if main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            shutil.rmtree(run_dir / LOGS, ignore_errors=True)
        return None
    ckpt = last_checkpoint(ckpt_dir)
    if ckpt is None:
        log.warning("--resume: no committed checkpoint in %s, starting from scratch", ckpt_dir)
        return None
    saved = ckpt_dir / RUN_CONFIG
    if saved.exists() and json.loads(saved.read_text()) != run_config:
        raise ConfigError(f"--resume: the configuration differs from the one {ckpt_dir} was trained with")
    if main:
        step = int(ckpt.name[11:])
        for p in ckpt_dir.glob("checkpoint-*"):  # partial checkpoints written after the last commit
            if p.name[11:].isdigit() and int(p.name[11:]) > step:
                shutil.rmtree(p, ignore_errors=True)
        truncate_log(run_dir / LOGS / METRICS_LOG, step)
    return ckpt


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` by a run that was killed."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def write_run_config(run_dir: Path, run_config: dict) -> None:
    """Mark ``run_dir`` as a model folder (an unfinished run is one too: ``--resume``) and save the
    configuration a ``--resume`` must match."""
    from patentcpc.io import MARKER, write_marker

    if not (run_dir / MARKER).exists():
        write_marker(run_dir, "model")
    atomic_write_text(run_dir / CHECKPOINTS / RUN_CONFIG, json.dumps(run_config, default=str))


def write_model_folder(model, run_dir: Path, keep_checkpoints: bool, output: Path | None = None) -> None:
    """Save atomically to ``output`` (default: ``run_dir`` itself): weights + manifest + the logs of
    ``run_dir`` (+ curves PNG), its checkpoints only if asked. A staging ``run_dir`` is removed
    once the model is in place."""
    from patentcpc.explain import save_index
    from patentcpc.models.artifact import atomic_dir, write_manifest

    output = run_dir if output is None else Path(output)
    logs = run_dir / LOGS
    with atomic_dir(output, kind="model") as tmp:
        model.save_weights(tmp)
        save_index(model, tmp)
        write_manifest(tmp, model.manifest)
        if logs.is_dir():
            shutil.copytree(logs, tmp / LOGS)
            try:
                from patentcpc.plots import plot_training_curves

                plot_training_curves(tmp / LOGS / METRICS_LOG, tmp / LOGS / "curves.png")
            except (ImportError, ValueError) as exc:  # plotting is optional
                log.warning("no training curves: %s", exc)
        if keep_checkpoints and (run_dir / CHECKPOINTS).is_dir():
            shutil.copytree(run_dir / CHECKPOINTS, tmp / CHECKPOINTS)
    if Path(run_dir) != output:
        shutil.rmtree(run_dir, ignore_errors=True)


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def needs_staging(output: Path, resume: bool) -> bool:
    """Whether a run into ``output`` replaces something there, and so is built beside it: not when
    resuming, nor into a new or empty folder (the run folder is the output then, for ``--resume``).
    Under several processes (DDP) only a finished model counts (a new run's own first files must not
    change the answer for a process that starts late)."""
    if resume or not output.is_dir():
        return False
    if (output / "manifest.json").exists():
        return True
    if _world_size() > 1:
        return False
    with os.scandir(output) as entries:
        return any(True for _ in entries)


def staging_dir(output: Path, main: bool = True) -> Path:
    """A new hidden folder beside ``output`` for a run that replaces it. Under DDP every process
    gets the same name (derived from the output and the launcher's rendezvous), the main one makes it."""
    from patentcpc.io import OutputError, artifact_kind, write_marker

    output = Path(output)
    if _world_size() <= 1:
        _remove_stale_staging(output)
        path = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.overwrite-"))
    else:
        key = "|".join([os.path.realpath(output), *(os.environ.get(k, "") for k in
                                                      ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"))])
        path = output.parent / f".{output.name}.overwrite-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if not main:
            return path
        if path.is_symlink() or (path.exists() and artifact_kind(path) != "model"):
            raise OutputError(f"{path}: exists and was not written by patentcpc; remove it or choose another --output")
        shutil.rmtree(path, ignore_errors=True)  # ours, left by a killed run with the same rendezvous
        path.mkdir()
    write_marker(path, "model", staging_for=output.name, pid=os.getpid(), host=socket.gethostname())
    return path


def _remove_stale_staging(output: Path) -> None:
    """Staging folders of ``output`` left by runs killed with ``kill -9`` (their process, on this
    machine, is gone): removed before a new one is made."""
    for path in output.parent.glob(f".{glob.escape(output.name)}.overwrite-*"):
        try:
            doc = json.loads((path / ".patentcpc.json").read_text(encoding="utf-8"))
            pid, host = int(doc["pid"]), doc["host"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a staging folder of ours: leave it
        if path.is_symlink() or doc.get("staging_for") != output.name or host != socket.gethostname() or pid <= 0:
            continue
        try:
            os.kill(pid, 0)
            continue  # still running (a concurrent run)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # exists, owned by someone else
            continue


def discard_run(run_dir: Path, existed: bool) -> None:
    """After a run failed or was interrupted: remove its folder (``existed``: only what it wrote in
    it) unless a committed checkpoint makes it worth a ``--resume``."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink() or not run_dir.is_dir() or last_checkpoint(run_dir / CHECKPOINTS) is not None:
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    from patentcpc.io import MARKER

    for name in (CHECKPOINTS, LOGS):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    if not (run_dir / "manifest.json").exists():
        with contextlib.suppress(FileNotFoundError):
            (run_dir / MARKER).unlink()


def check_train_output(output: Path, resume: bool, overwrite: bool, inputs: list) -> None:
    """Before training into ``output``: ``--resume`` and ``--overwrite`` make sense together with what
    is there (never into a folder patentcpc did not write). Whether the kind can resume at all is the
    registry's question (:meth:`patentcpc.registry.Kind.require`)."""
    from patentcpc.io import check_model_output

    if resume and overwrite:
        raise ConfigError("--resume continues the model at --output and --overwrite replaces it: give one")
    check_model_output(output, inputs, resume=resume, overwrite=overwrite)
    if resume and (output / "manifest.json").exists() and last_checkpoint(output / CHECKPOINTS) is None:
        raise ConfigError(f"{output}: a finished model without checkpoints: nothing to --resume "
                          "(use --overwrite to replace it)")
