"""Fetch one source file: mirrors in order, size + checksum, HTTP Range resume, atomic rename."""

import json
import logging
from pathlib import Path

from fcnlib.download import download
from fcnlib.io import atomic_write_text, sha256_file
from fcnlib.scripting import run


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
        digest = sha256_file(dest)
        atomic_write_text(f"{dest}.sha256", f"{digest}  {dest.name}\n")
        logging.warning("%s has no published checksum; recorded sha256 %s — pin it in the config", dest, digest)


if __name__ == "__main__":  # not in spawned worker processes, which re-import this file
    run(main, globals().get("snakemake"))
