"""Driver-side file access through the session's JVM: what each operation costs in py4j calls."""

from __future__ import annotations

from contextlib import contextmanager

from pipelines.io.hadoop import HadoopFs


@contextmanager
def counted_py4j_calls(spark):
    """Count the commands the driver sends to the JVM inside the block."""
    client = spark.sparkContext._gateway._gateway_client
    send, calls = client.send_command, []

    def counting(command, *args, **kwargs):
        calls.append(command)
        return send(command, *args, **kwargs)

    client.send_command = counting
    try:
        yield calls
    finally:
        client.send_command = send


def test_a_path_is_checked_in_three_jvm_calls_whatever_its_package_depth(spark, tmp_path):
    # Walking ``jvm.org.apache.hadoop.fs.Path`` costs a call per package step, each a failed class
    # lookup through every jar; the class found once by its full name leaves the constructor,
    # getFileSystem and exists.
    fs = HadoopFs(spark)
    (tmp_path / "here").write_text("x")
    with counted_py4j_calls(spark) as calls:
        assert fs.exists(str(tmp_path / "here")) and not fs.exists(str(tmp_path / "missing"))
    assert len(calls) == 6, calls
