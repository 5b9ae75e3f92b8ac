"""Check crash states: each in a new process, forked from one that imported the format once.

``python -m tests.powerloss.verifier JOB_JSON RESULTS_JSON``

For each state a child opens the store read-only, then (in another process)
for appending, which repairs what a writer repairs, and reports: the open's outcome (``ok``, the
typed error's class, or ``untyped:<class>``), which required ids are missing or
unreadable, and any id whose pixels (or encoded bytes) or label differ from what
was written. A child that crashes or hangs is reported as such.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import numpy as np

import storage
from storage.errors import StoreError
from storage.registry import backend_class
from tests.powerloss.sequence import batch_for

_TIMEOUT = 60.0
_ONE_BY_ONE = 4  # newest ids also read with read_one


def outcome_of(error: BaseException) -> str:
    name = type(error).__name__
    return name if isinstance(error, StoreError) else f"untyped:{name}"


def check_store(path: str, backend: str, mode: str, seed: int, written: set[int],
                required: list[int]) -> dict:
    result = {"open": "ok", "missing": [], "unreadable": [], "wrong": [], "errors": [],
              "present": 0}
    try:
        # Nothing is cut after the check: the writer's repairs need no fsync here.
        store = storage.open_store(path, backend, mode=mode, durable=False)
    except Exception as error:
        result["open"] = outcome_of(error)
        result["errors"].append(f"open: {error}"[:300])
        return result
    try:
        ids = store.ids().tolist()
        result["present"] = len(ids)
        result["missing"] = sorted(set(required) - set(ids))
        result["wrong"] = [key for key in ids if key not in written]  # never written
        _check_all(store, seed, [key for key in ids if key in written], result)
    except Exception as error:
        result["errors"].append(f"{outcome_of(error)}: {error}"[:300])
        if not isinstance(error, StoreError):
            result["open"] = f"untyped:{type(error).__name__}"
    finally:
        try:
            store.close()
        except Exception as error:
            result["errors"].append(f"close: {outcome_of(error)}: {error}"[:300])
    return result


def _check_one(store, seed: int, key: int, result: dict) -> None:
    try:
        image, label = store.read_one(key)
    except StoreError:
        result["unreadable"].append(key)
        return
    expected_images, expected_labels = batch_for(seed, [key], store.encoding)
    if _differ([image], expected_images)[0] or label != expected_labels[0]:
        result["wrong"].append(key)


def _differ(images, expected) -> np.ndarray:
    """Per image: whether it differs from the expected pixels, or bytes (a list)."""
    if isinstance(expected, list):
        return np.array([not (isinstance(image, bytes) and image == want)
                         for image, want in zip(images, expected)])
    return (images != expected).reshape(len(expected), -1).any(axis=1)


def _check_all(store, seed: int, keys: list[int], result: dict) -> None:
    """Every id present read together, byte for byte; one by one where that fails (to
    name the unreadable ids), and a few newest and oldest one by one anyway (read_one is
    a path of its own in several formats)."""
    if not keys:
        return
    try:
        images, labels = store.read_many(keys)
    except StoreError as error:
        result["errors"].append(f"read_many: {outcome_of(error)}: {error}"[:300])
        for key in keys:
            _check_one(store, seed, key, result)
        return
    expected_images, expected_labels = batch_for(seed, keys, store.encoding)
    differ = _differ(images, expected_images)
    result["wrong"] += [keys[i] for i in np.flatnonzero(differ | (labels != expected_labels))]
    for key in sorted(set(keys[-_ONE_BY_ONE:] + keys[:1])):
        _check_one(store, seed, key, result)


def check_state(job: dict, state: dict) -> dict:
    """Read-only first, in a process of its own; then as the next writer would, which
    repairs what a writer repairs (the read must not depend on that)."""
    written = {key for call in job["plan"] for key in call["ids"]}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        result = check_store(state["dir"], job["backend"], "r", job["seed"], written,
                             state["required"])
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        read_only = {"open": f"crash:signal {os.WTERMSIG(status)}"}
    else:
        read_only = json.loads(payload)
    return {"r": read_only, "a": check_store(state["dir"], job["backend"], "a", job["seed"],
                                             written, state["required"])}


def run_all(job: dict) -> list[dict]:
    states = job["states"]
    results: list[dict | None] = [None] * len(states)
    running: dict[int, tuple[int, int, float]] = {}  # pid -> (state number, pipe, started)
    waiting = list(range(len(states)))
    buffers: dict[int, bytes] = {}
    while waiting or running:
        while waiting and len(running) < job.get("workers", 2):
            number = waiting.pop(0)
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                try:
                    payload = json.dumps(check_state(job, states[number])).encode()
                except BaseException as error:  # noqa: BLE001 - reported, never raised here
                    payload = json.dumps({"harness_error": repr(error)}).encode()
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(payload)
                os._exit(0)
            os.close(write_end)
            running[pid] = (number, read_end, time.monotonic())
            buffers[read_end] = b""
        readable, _, _ = select.select([entry[1] for entry in running.values()], [], [], 0.5)
        for descriptor in readable:
            buffers[descriptor] += os.read(descriptor, 1 << 16)
        for pid, (number, descriptor, started) in list(running.items()):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished == 0 and time.monotonic() - started > _TIMEOUT:
                os.kill(pid, signal.SIGKILL)
                finished, status = os.waitpid(pid, 0)
                results[number] = {"hang": f"no answer in {_TIMEOUT:.0f} s"}
            if finished == 0:
                continue
            while chunk := os.read(descriptor, 1 << 16):
                buffers[descriptor] += chunk
            os.close(descriptor)
            del running[pid]
            if results[number] is None:
                if os.WIFSIGNALED(status):
                    results[number] = {"crash": f"killed by signal {os.WTERMSIG(status)}"}
                else:
                    results[number] = json.loads(buffers[descriptor] or b'{"crash": "no report"}')
            del buffers[descriptor]
    return results


def main(argv: list[str]) -> int:
    job_file, results_file = argv
    job = json.loads(Path(job_file).read_text())
    backend_class(job["backend"])  # imported once here, not in every forked child
    Path(results_file).write_text(json.dumps(run_all(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
