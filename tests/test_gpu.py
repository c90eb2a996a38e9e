"""GPUs under xdist: each worker its own GPU where there are several, a lock on a shared one."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from pytest_upskill.errors import SampleError
from pytest_upskill.paths import lock_dir
from pytest_upskill.run.gpu import (
    device_lock,
    pin_worker_gpu,
    visible_gpus,
    worker_gpu,
    worker_host,
)


def test_visible_gpus_follow_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_visible_gpus_without_a_driver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert visible_gpus({}) == []


@pytest.mark.parametrize(
    ("worker", "gpus", "expected"),
    [(0, ["0", "1"], "0"), (5, ["4", "6", "7"], "7"), (1, ["0"], None)],
)
def test_worker_i_gets_gpu_i_mod_n(worker: int, gpus: list[str], expected: str | None) -> None:
    assert worker_gpu(worker, gpus) == expected


def test_a_worker_is_pinned_to_its_gpu() -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "4,5,6"}
    assert pin_worker_gpu(1, environ) == "5"
    assert environ["CUDA_VISIBLE_DEVICES"] == "5"
    one = {"CUDA_VISIBLE_DEVICES": "3"}
    assert pin_worker_gpu(1, one) is None
    assert one["CUDA_VISIBLE_DEVICES"] == "3"


def test_real_xdist_workers_each_see_one_gpu(
    pytester: pytest.Pytester,
    upskill_args: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,8")
    pytester.makepyfile(
        """
        import json, os

        def test_a(worker_id): json.dump(os.environ["CUDA_VISIBLE_DEVICES"], open(f"{worker_id}.json", "w"))
        def test_b(worker_id): json.dump(os.environ["CUDA_VISIBLE_DEVICES"], open(f"{worker_id}.json", "w"))
        """
    )
    pytester.runpytest(
        "-n", "2", "--dist=each", "--upskill-model=oracle", *upskill_args
    ).assert_outcomes(passed=4)
    seen = {path.stem: json.loads(path.read_text()) for path in pytester.path.glob("gw*.json")}
    assert seen == {"gw0": "7", "gw1": "8"}


def test_a_second_holder_of_a_gpu_waits_then_gives_up_with_a_clear_error() -> None:
    device = f"test-{uuid.uuid4()}"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with device_lock(device, timeout_s=5):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        with (
            pytest.raises(
                SampleError, match=f"waited 0.2 s for GPU {device}, held by another test"
            ),
            device_lock(device, timeout_s=0.2),
        ):
            pass
    finally:
        release.set()
        holder.join()
    with device_lock(device, timeout_s=0.2):  # free again once released
        pass
    (lock_dir() / f"gpu-{device}.lock").unlink()


def test_a_restarted_worker_gets_the_gpu_of_the_worker_it_replaces(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,8")
    pytester.makepyfile(
        """
        import json, os, time, pytest

        @pytest.mark.parametrize("n", range(8))
        def test_each(worker_id, n):
            json.dump(os.environ["CUDA_VISIBLE_DEVICES"], open(f"{worker_id}.json", "w"))
            if worker_id == "gw1" and not os.path.exists("crashed"):
                open("crashed", "w").close()
                os._exit(1)
            # gw0 holds its GPU until gw1's replacement has started
            for _ in range(600):
                if worker_id != "gw0" or os.path.exists("gw2.json"):
                    break
                time.sleep(0.1)
        """
    )
    pytester.runpytest("-n", "2", "--upskill-model=oracle", *upskill_args)
    seen = {path.stem: json.loads(path.read_text()) for path in pytester.path.glob("gw*.json")}
    assert seen == {"gw0": "7", "gw1": "8", "gw2": "8"}  # gw2 replaced gw1, on its GPU


def test_workers_are_placed_by_host() -> None:
    import execnet

    hosts = ["popen", "socket=gpu-a:8888", "socket=gpu-a:8889", "ssh=ci@gpu-b//python=python3"]
    assert [worker_host(execnet.XSpec(spec)) for spec in hosts] == ["", "gpu-a", "gpu-a", "gpu-b"]
