"""Unsigned copies of Spark's signed jars: the same classes, no signature, used only beside their originals."""

from __future__ import annotations

import os
import subprocess
import zipfile

import pytest

from pipelines.spark_session import UNSIGNED_JARS
from pipelines.unsigned_jars import (is_signed, spark_jars, usable_copies, write_unsigned_copies,
                                     write_unsigned_copy)

MAIN_SECTION = b"Manifest-Version: 1.0\r\nCreated-By: a build tool\r\nBundle-Name: a very long bundle name that the\r\n  writer wrapped\r\n"


def _signed_jar(path) -> dict[str, bytes]:
    """A jar laid out as a signed one (manifest digests, .SF and .DSA); returns its entries."""
    entries = {
        "META-INF/MANIFEST.MF": MAIN_SECTION + b"\r\nName: a/B.class\r\nSHA-256-Digest: AAAA\r\n\r\n",
        "META-INF/DUMMY.SF": b"Signature-Version: 1.0\r\n",
        "META-INF/DUMMY.DSA": b"\x30\x82",
        "a/B.class": bytes(range(256)) * 3,
        "META-INF/maven/a/pom.xml": b"<project/>",
    }
    with zipfile.ZipFile(path, "w") as jar:
        for name, data in entries.items():
            jar.writestr(name, data)
    return entries


def test_a_copy_keeps_every_class_and_resource_and_drops_the_signature(tmp_path):
    entries = _signed_jar(tmp_path / "signed.jar")
    write_unsigned_copy(str(tmp_path / "signed.jar"), str(tmp_path / "copy.jar"))
    with zipfile.ZipFile(tmp_path / "copy.jar") as copy:
        assert sorted(copy.namelist()) == ["META-INF/MANIFEST.MF", "META-INF/maven/a/pom.xml", "a/B.class"]
        assert copy.read("a/B.class") == entries["a/B.class"]
        assert copy.read("META-INF/maven/a/pom.xml") == entries["META-INF/maven/a/pom.xml"]
        assert copy.read("META-INF/MANIFEST.MF") == MAIN_SECTION.replace(b"\r\n", b"\n") + b"\n"
    assert is_signed(str(tmp_path / "signed.jar")) and not is_signed(str(tmp_path / "copy.jar"))


def test_the_copy_of_sparks_janino_is_unsigned_to_the_jdk_and_holds_the_same_classes(tmp_path):
    copies = write_unsigned_copies(spark_jars(), str(tmp_path / "copies"))
    janino = [c for c in copies if os.path.basename(c).startswith("janino-")]
    assert janino, f"no signed Janino jar among {spark_jars()}: {sorted(os.listdir(spark_jars()))}"
    original = os.path.join(spark_jars(), os.path.basename(janino[0]))
    with zipfile.ZipFile(original) as signed, zipfile.ZipFile(janino[0]) as unsigned:
        classes = [n for n in signed.namelist() if n.endswith(".class")]
        assert len(classes) > 500 and sorted(classes) == sorted(n for n in unsigned.namelist() if n.endswith(".class"))
        assert all(signed.read(n) == unsigned.read(n) for n in classes)
    verify = subprocess.run(["jarsigner", "-verify", janino[0]], capture_output=True, text=True)
    assert "jar is unsigned" in verify.stdout, verify.stdout + verify.stderr


def test_a_copy_is_used_only_while_spark_holds_its_original(tmp_path):
    (tmp_path / "jars").mkdir()
    (tmp_path / "copies").mkdir()
    for name in ("janino-3.1.9.jar", "commons-compiler-3.1.9.jar"):
        (tmp_path / "copies" / name).write_bytes(b"")
    (tmp_path / "jars" / "janino-3.1.9.jar").write_bytes(b"")  # the other is of a Spark since replaced
    assert usable_copies(str(tmp_path / "copies"), str(tmp_path / "jars")) == [str(tmp_path / "copies" / "janino-3.1.9.jar")]
    assert usable_copies(str(tmp_path / "none"), str(tmp_path / "jars")) == []


def test_the_session_loads_janino_from_the_unsigned_copy(spark):
    """Fails where the copies written by scripts/warm_start.py are not first on the driver's class path."""
    copies = usable_copies(UNSIGNED_JARS, spark_jars())
    if not copies:
        pytest.skip(f"no unsigned copies in {UNSIGNED_JARS}: scripts/warm_start.py has not run here")
    jvm = spark.sparkContext._jvm
    source = (jvm.java.lang.Class.forName("org.codehaus.janino.ClassBodyEvaluator")
              .getProtectionDomain().getCodeSource().getLocation().getPath())
    assert os.path.realpath(source) in {os.path.realpath(c) for c in copies}
