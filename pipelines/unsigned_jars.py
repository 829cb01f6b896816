"""Unsigned copies of the signed jars among Spark's, so that a class archive can hold their classes.

The JVM leaves the classes of a signed jar out of a class-data-sharing archive ("Skipping ...:
Signed JAR"). Spark ships two: Janino and its compiler interface (commons-compiler), whose
classes (about 660) every job loads when it compiles its first query, so each job read and
verified them from the jars, digest by digest, while its first query waited. Their signatures
are a build tool's placeholder (``META-INF/DUMMY.SF``, ``DUMMY.DSA``): they vouch for nothing.

``scripts/warm_start.py`` writes a copy of each such jar without its signature files and
with its manifest cut to the main section (the per-entry digests are all a signature adds),
every class byte for byte as it was, then writes the class archive with the copies first on
the driver's class path; a job that starts Spark itself puts them there again
(:mod:`pipelines.spark_session`), and the archive maps their classes like the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile

from pyspark.find_spark_home import _find_spark_home

SIGNATURE_FILE = re.compile(r"META-INF/[^/]+\.(SF|DSA|RSA|EC)")
MANIFEST = "META-INF/MANIFEST.MF"


def spark_jars() -> str:
    """The folder of the jars of the Spark that PySpark launches (``$SPARK_HOME/jars``)."""
    return os.path.join(_find_spark_home(), "jars")


def is_signed(jar: str) -> bool:
    with zipfile.ZipFile(jar) as archive:
        return any(SIGNATURE_FILE.fullmatch(name) for name in archive.namelist())


def write_unsigned_copy(jar: str, copy: str) -> None:
    """``jar`` at ``copy`` less its signature: no signature files, the manifest's main section only."""
    with zipfile.ZipFile(jar) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            if SIGNATURE_FILE.fullmatch(entry.filename):
                continue
            data = source.read(entry)
            if entry.filename == MANIFEST:  # sections after the first blank line are per-entry digests
                data = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].rstrip(b"\n") + b"\n\n"
            target.writestr(entry, data)


def write_unsigned_copies(jars: str, folder: str) -> list[str]:
    """Unsigned copies of the signed jars of ``jars``, under their own names in ``folder`` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    copies = []
    for name in sorted(os.listdir(jars)):
        if name.endswith(".jar") and is_signed(os.path.join(jars, name)):
            copies.append(os.path.join(folder, name))
            write_unsigned_copy(os.path.join(jars, name), copies[-1])
    return copies


def usable_copies(folder: str, jars: str) -> list[str]:
    """The copies in ``folder`` whose originals ``jars`` still holds under the same name (a jar's
    name carries its version): a copy left from another Spark is never put on its class path."""
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith(".jar") and os.path.isfile(os.path.join(jars, name))]
