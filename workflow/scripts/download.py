"""Fetch one source file: mirrors in order, size + checksum, HTTP Range resume, atomic rename."""

import json
import logging
from pathlib import Path

from fcnlib.files.download import download, record_path
from fcnlib.files.io import atomic_write_text, sha256_file
from fcnlib.pipeline.scripting import run


def main(job):
    spec = dict(job.params.spec)
    dest = Path(job.output[0])
    if spec.get("demo"):
        # The offline demo serves its generated files through file:// so the real code path runs.
        manifest_path = Path(job.input.manifest[0])
        entry = json.loads(manifest_path.read_text())[spec["filename"]]
        spec["urls"] = [(manifest_path.parent.resolve() / spec["filename"]).as_uri()]
        spec["sha256"], spec["size"] = entry["sha256"], entry["size"]
    download(spec["urls"], dest, size=spec.get("size"), md5=spec.get("md5"), sha1=spec.get("sha1"),
             sha256=spec.get("sha256"), cache_dirs=[Path(d) for d in job.params.cache_dirs])
    if not any(spec.get(k) for k in ("md5", "sha1", "sha256")):
        rec = record_path(dest)
        if not rec.exists():  # download() records it when no checksum pins the file (not even its name)
            atomic_write_text(rec, f"{sha256_file(dest)}  {dest.name}\n")
        logging.warning("%s has no published checksum; later downloads must match the sha256 recorded in %s "
                        "(%s) — pin it in the config", dest, rec, rec.read_text().split()[0])


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
