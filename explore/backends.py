"""Where design points are costed: in this process, in worker processes, or on Ray.

Every backend takes a list of points and yields (index, record body) as points
finish, in any order; the driver alone writes the results store. Workers keep one
``Evaluator`` each (Ray actors, pool processes), so a model is loaded and lowered
once per worker, not once per point.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

from explore.evaluate import Evaluator
from explore.space import Space
from models.errors import UserError


class InlineBackend:
    """Costs points one after another in this process."""
    name = "inline"
    workers = 1

    def __init__(self, space: Space):
        self.evaluator = Evaluator(space)

    def run(self, points: list[dict]) -> Iterator[tuple[int, dict]]:
        for index, point in enumerate(points):
            yield index, self.evaluator.evaluate(point)

    def close(self) -> None:
        pass


_PROCESS_EVALUATOR: list[Evaluator] = []     # one per pool worker process, set by its initializer


def _start_worker(space: Space) -> None:
    _PROCESS_EVALUATOR[:] = [Evaluator(space)]


def _evaluate_in_worker(point: dict) -> dict:
    return _PROCESS_EVALUATOR[0].evaluate(point)


class ProcessBackend:
    """Costs points in a pool of plain processes (no Ray needed)."""
    name = "processes"

    def __init__(self, space: Space, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        # forkserver/spawn would re-import per worker; fork shares the loaded modules.
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                        initializer=_start_worker, initargs=(space,))

    def run(self, points: list[dict]) -> Iterator[tuple[int, dict]]:
        from concurrent.futures import as_completed

        futures = {self.pool.submit(_evaluate_in_worker, point): index
                   for index, point in enumerate(points)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayBackend:
    """Costs points as Ray tasks on actors, each holding one Evaluator.

    ``mode`` 'local' starts a private Ray instance on 127.0.0.1 with ``workers``
    CPUs (no dashboard); 'auto' joins the cluster at RAY_ADDRESS or the one
    `ray start --head` left on this machine (``address`` overrides both)."""
    name = "ray"

    def __init__(self, space: Space, mode: str, workers: int, address: str | None = None):
        import ray

        self.ray = ray
        if mode == "local":
            ray.init(address="local", num_cpus=workers, include_dashboard=False,
                     _node_ip_address="127.0.0.1", log_to_driver=False,
                     configure_logging=False)
        else:
            target = address or os.environ.get("RAY_ADDRESS") or "auto"
            _check_answers(target)
            try:
                ray.init(address=target, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UserError(f"no Ray cluster answers at '{target}': "
                                f"{str(error).splitlines()[0][:160]}", field="--ray",
                                fix="start one with `ray start --head --node-ip-address "
                                    "127.0.0.1`, set RAY_ADDRESS, or use --ray local") from None
            workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.workers = workers
        actor_class = ray.remote(num_cpus=1)(_RayEvaluator)
        self.actors = [actor_class.remote(space) for _ in range(workers)]

    def run(self, points: list[dict]) -> Iterator[tuple[int, dict]]:
        ray = self.ray
        pending: dict[Any, tuple[int, int]] = {}
        queue = list(enumerate(points))
        queue.reverse()
        # Two points in flight per actor: one running, one queued behind it.
        for _ in range(2):
            for slot, actor in enumerate(self.actors):
                if queue:
                    index, point = queue.pop()
                    pending[actor.evaluate.remote(point)] = (index, slot)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for reference in done:
                index, slot = pending.pop(reference)
                if queue:
                    next_index, point = queue.pop()
                    pending[self.actors[slot].evaluate.remote(point)] = (next_index, slot)
                yield index, ray.get(reference)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()


class _RayEvaluator:
    """A Ray actor's state: one Evaluator for the whole run."""

    def __init__(self, space: Space):
        self.evaluator = Evaluator(space)

    def evaluate(self, point: dict) -> dict:
        return self.evaluator.evaluate(point)


def _check_answers(target: str, timeout_s: float = 3.0) -> None:
    """Raises UserError when a host:port Ray address does not accept a connection.

    ray.init on a dead address retries for minutes (and may follow a stale
    /tmp/ray cluster file elsewhere), so the address is probed first."""
    address = target.split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    import socket
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as error:
        raise UserError(f"no Ray cluster answers at '{target}' ({error.strerror or error})",
                        field="--ray",
                        fix="start one with `ray start --head --node-ip-address 127.0.0.1`, "
                            "set RAY_ADDRESS to its address, or use --ray local") from None


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def make_backend(space: Space, ray_mode: str | None, workers: int):
    """Returns the backend the command line asks for (--ray local|auto, --workers N).

    ``workers`` 0 with --ray auto takes one actor per CPU of the cluster."""
    if ray_mode:
        if not ray_available():
            raise UserError("ray is not installed", field="--ray",
                            fix="pip install 'sparse-codesign[ray]', or leave --ray out to use "
                                "--workers processes")
        return RayBackend(space, ray_mode, workers)
    if workers > 1:
        return ProcessBackend(space, workers)
    return InlineBackend(space)
