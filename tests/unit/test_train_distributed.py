"""Streaming training input and multi-worker training (issue 19): TF_CONFIG, worker shares, the
tf.data input over Parquet shards, and two real worker processes on loopback that are killed and
resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from components._shared import io
from components._shared.errors import ConfigError, ModelError
from components.train import distributed, inputs, worker
from pipelines.data import generate_churn
from tests.stage_helpers import prepare

# --------------------------------------------------------------------------- TF_CONFIG


def tf_config(cluster: dict, kind: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def test_tf_config_with_a_chief_numbers_workers_after_it():
    cluster = {"chief": ["c:1"], "worker": ["w0:2", "w1:3"]}
    chief = distributed.parse_tf_config(tf_config(cluster, "chief", 0))
    w1 = distributed.parse_tf_config(tf_config(cluster, "worker", 1))
    assert chief.addresses == ("c:1", "w0:2", "w1:3") and chief.num_workers == 3
    assert (chief.worker_id, chief.is_chief) == (0, True)
    assert (w1.worker_id, w1.is_chief) == (2, False)


def test_tf_config_without_a_chief_makes_worker_0_the_chief():
    cluster = {"worker": ["a:1", "b:2"]}
    assert distributed.parse_tf_config(tf_config(cluster, "worker", 0)).is_chief
    assert distributed.parse_tf_config(tf_config(cluster, "worker", 1)).worker_id == 1
    assert distributed.cluster_from_env({}) is None
    assert distributed.cluster_from_env({"TF_CONFIG": " "}) is None


@pytest.mark.parametrize("text, message", [
    ("{oops", r"^TF_CONFIG is not JSON \("),
    ('{"task": {"type": "worker", "index": 0}}', r'^TF_CONFIG has no "cluster" object'),
    ('{"cluster": {"worker": ["a:1"]}}', r'^TF_CONFIG has no "task" object'),
    (tf_config({"worker": ["a:1"], "ps": ["p:2"]}, "worker", 0), r"^TF_CONFIG names 'ps' tasks: multi-worker"),
    (tf_config({"worker": ["a:1", "b:2"]}, "worker", 2), r"^TF_CONFIG task index 2 is not one of the 2 'worker'"),
    (tf_config({"worker": ["a"]}, "worker", 0), r"^TF_CONFIG cluster 'worker' must be a list of host:port"),
    (tf_config({"chief": ["a:1"], "master": ["b:2"]}, "chief", 0), r"^TF_CONFIG names 2 chief tasks"),
    (tf_config({"worker": ["a:1", "a:1"]}, "worker", 0), r"^TF_CONFIG names the same address twice"),
])
def test_bad_tf_config_is_one_sentence(text, message):
    with pytest.raises(ConfigError, match=message):
        distributed.parse_tf_config(text)


def test_worker_with_a_bad_tf_config_exits_1_with_one_sentence(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train_path": "t", "eval_path": "e", "model_dir": "m", "spec": {"x": 1}}))
    env = {**os.environ, "TF_CONFIG": tf_config({"worker": ["a:1"], "evaluator": ["e:2"]}, "worker", 0)}
    proc = subprocess.run([sys.executable, "-m", "components.train.worker", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: TF_CONFIG names 'evaluator' tasks: multi-worker training (MultiWorkerMirroredStrategy) runs only "
        "'chief' and 'worker' tasks")


def test_worker_config_is_checked(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train_path": "t", "eval_path": "e", "spec": {}}))
    with pytest.raises(ConfigError, match=r"has no 'model_dir'$"):
        worker.load_config(str(path))
    path.write_text(json.dumps({"train_path": "t", "eval_path": "e", "model_dir": "m", "spec": {"a": 1}, "epochs": 3}))
    with pytest.raises(ConfigError, match=r"has unknown key 'epochs' \(known: "):
        worker.load_config(str(path))
    with pytest.raises(ConfigError, match=r"does not exist$"):
        worker.load_config(str(tmp_path / "missing.json"))


# --------------------------------------------------------------------------- worker shares


@pytest.mark.parametrize("total, workers, batch", [(1000, 2, 32), (1001, 2, 32), (1025, 2, 512), (7, 3, 2),
                                                   (129, 4, 32), (2, 2, 16)])
def test_worker_shares_are_contiguous_balanced_and_take_the_same_number_of_steps(total, workers, batch):
    shares = [inputs.worker_rows(total, workers, k, batch) for k in range(workers)]
    assert shares[0][0] == 0 and all(a[1] == b[0] for a, b in zip(shares, shares[1:], strict=False))
    sizes = [hi - lo for lo, hi in shares]
    assert max(sizes) - min(sizes) <= 1 and total - sum(sizes) < workers
    assert len({-(-s // batch) for s in sizes}) == 1


def test_worker_rows_refuses_fewer_rows_than_workers():
    with pytest.raises(ModelError, match=r"^the split has 1 rows, fewer than the 2 workers$"):
        inputs.worker_rows(1, 2, 0, 16)


@pytest.mark.parametrize("task, labels", [("binary", [0, 1, 1, 1, 0, 1]), ("multiclass", [0, 2, 2, 1, 2, 2, 2])])
def test_class_weights_from_counts_is_the_task_rule(task, labels):
    from components._shared.task import class_weights, task_of

    t = task_of({"task": task})
    y = np.asarray(labels, dtype=np.float32 if task == "binary" else np.int32)
    counts = np.bincount(y.astype(int))
    assert inputs.class_weights_from_counts(t, counts, "balanced") == pytest.approx(class_weights(t, y, "balanced"))
    assert inputs.class_weights_from_counts(t, counts, "none") is None


# --------------------------------------------------------------------------- streaming input


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare(generate_churn(2000, seed=5), str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def sharded(prepared, tmp_path_factory):
    """The train split re-written as 3 shards of small row groups (97 rows)."""
    import pyarrow.parquet as pq

    table = io.read_parquet_arrow(prepared.train)
    folder = tmp_path_factory.mktemp("sharded")
    cuts = [0, 500, 1100, table.num_rows]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        pq.write_table(table.slice(a, b - a), str(folder / f"part-{i:05d}.parquet"), row_group_size=97)
    return str(folder)


def rows_of(chunks) -> np.ndarray:
    """Rows (numeric | categorical | label) of encoded chunks, sorted, to compare as multisets."""
    parts = [np.column_stack([x["numeric"], x["categorical"].astype(np.float32), y]) for x, y, *_ in chunks]
    table = np.concatenate(parts)
    return table[np.lexsort(np.nan_to_num(table, nan=-9e9).T[::-1])]


def test_streamed_shares_cover_the_split_once_whatever_the_shards(prepared, sharded):
    from components._shared.transform import encode_parquet

    x, y = encode_parquet(prepared.train, prepared.spec)
    expected = rows_of([(x, y)])
    one = inputs.EncodedSplit(sharded, prepared.spec, cache_bytes=0)  # streams: no cache
    assert not one.cached and len(one.pieces) > 6
    shuffled = list(one.chunks(shuffle=True, seed=3, shuffle_rows=300))
    assert len(shuffled) > 1  # several buffers, not the whole split at once
    assert np.array_equal(rows_of(shuffled), expected, equal_nan=True)
    in_order = np.concatenate([c[1] for c in one.chunks()])
    assert np.array_equal(in_order, y) and not np.array_equal(np.concatenate([c[1] for c in shuffled]), y)
    again = np.concatenate([c[1] for c in one.chunks(shuffle=True, seed=3, shuffle_rows=300)])
    assert np.array_equal(again, np.concatenate([c[1] for c in shuffled]))  # seeded

    # Two workers: disjoint contiguous shares, all rows but at most one, the same number of batches.
    shares = [inputs.EncodedSplit(sharded, prepared.spec, workers=2, worker=k, batch=64) for k in (0, 1)]
    assert shares[0].hi == shares[1].lo and shares[0].num_batches(64) == shares[1].num_batches(64)
    chunks = [c for s in shares for c in s.chunks()]
    m = sum(len(c[1]) for c in chunks)
    assert len(y) - 1 <= m <= len(y)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), y[:m])  # in order, share after share
    assert np.array_equal(rows_of(chunks), rows_of([({k: v[:m] for k, v in x.items()}, y[:m])]), equal_nan=True)


def test_tf_dataset_batches_are_the_same_rows_streamed_or_cached(prepared, sharded):
    streamed = inputs.EncodedSplit(sharded, prepared.spec, cache_bytes=0)
    cached = inputs.EncodedSplit(sharded, prepared.spec)
    assert cached.cached
    weights = {0: 0.5, 1: 2.0}
    for split in (streamed, cached):
        ds = split.dataset(128, shuffle=True, seed=1, class_weight=weights)
        batches = [tuple(np.asarray(t) if not isinstance(t, dict) else {k: np.asarray(v) for k, v in t.items()}
                         for t in b) for b in ds]
        assert [len(b[1]) for b in batches] == [128] * (split.rows // 128) + [split.rows % 128]
        assert all(np.array_equal(b[2], np.where(b[1] == 1, 2.0, 0.5)) for b in batches)
        got = rows_of(batches)
        assert np.array_equal(got, rows_of(list(streamed.chunks())), equal_nan=True)


# --------------------------------------------------------------------------- two workers on loopback


@pytest.mark.slow
def test_two_workers_train_and_resume_after_one_is_killed(prepared, tmp_path):
    """Two worker processes (TF_CONFIG on loopback); worker 1 is killed after the first epoch's
    checkpoint; both are restarted (as a TFJob / CustomJob would) and training continues at epoch 2."""
    from tests.benchmarks.multiworker import start_workers, wait_all, write_config

    config = write_config(prepared, str(tmp_path), epochs=2, batch_size=256)
    ckpt = os.path.join(str(tmp_path), "checkpoints")
    state_path = os.path.join(ckpt, "state.json")
    procs = start_workers(config, 2, str(tmp_path), tag="-a")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not os.path.exists(state_path):
        assert all(p.poll() is None for p in procs), open(tmp_path / "worker-0-a.log").read()[-3000:]
        time.sleep(0.2)
    first = io.read_json(state_path)
    assert len(first["history"]) == 1 and first["snapshot"] == "epoch-0001"
    procs[1].send_signal(signal.SIGKILL)
    # The chief loses its peer (on its own it fails some 15 s later, when TensorFlow's coordination
    # service notices); a launcher restarts every replica, so stop it now as a launcher would.
    procs[0].send_signal(signal.SIGTERM)
    codes = wait_all(procs, timeout=30)
    assert codes[0] != 0 and codes[1] == -signal.SIGKILL
    assert not os.path.exists(tmp_path / "result.json") and not os.path.exists(tmp_path / "model")

    codes = wait_all(start_workers(config, 2, str(tmp_path), tag="-b"), timeout=300)
    chief_log = open(tmp_path / "worker-0-b.log").read()
    assert codes == [0, 0], chief_log[-3000:]
    epochs = [line.split()[1] for line in chief_log.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["2/2"]  # resumed: the finished epoch is not repeated
    result = io.read_json(str(tmp_path / "result.json"))
    assert result["workers"] == 2 and result["device"] == "2 workers x CPU"
    assert result["epochs_run"] == 2 and result["history"]["loss"][0] == pytest.approx(first["history"][0]["loss"])
    assert result["metrics"]["eval_auc"] > 0.6
    assert {"model.keras", "train_metrics.json", "transform_spec.json"} <= set(os.listdir(tmp_path / "model"))
    assert not os.path.exists(ckpt)  # the chief removed the checkpoints once training succeeded
    assert "the chief writes the model" in open(tmp_path / "worker-1-b.log").read()
